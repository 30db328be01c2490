// Registers an HTTP function with the Functions host and records it, so the dev host serves the very same table.
import { app } from '@azure/functions';
import type { HttpHandler, HttpMethod } from '@azure/functions';

import { toHttpResponse } from '../errors';

export interface HttpFunctionDefinition {
  name: string;
  methods: HttpMethod[];
  route: string;
  handler: HttpHandler;
}

const definitions: HttpFunctionDefinition[] = [];

/**
 * `app.http` with anonymous auth (devices cannot send function keys; auth is done in code) and the one error mapper
 * around the handler, so no handler needs its own try/catch.
 */
export function httpFunction(name: string, options: Omit<HttpFunctionDefinition, 'name'>): void {
  const handler: HttpHandler = async (request, context) => {
    try {
      return await options.handler(request, context);
    } catch (err) {
      return toHttpResponse(err, context);
    }
  };
  definitions.push({ name, methods: options.methods, route: options.route, handler });
  app.http(name, { methods: options.methods, route: options.route, authLevel: 'anonymous', handler });
}

/** Every function registered so far, in registration order. */
export function registeredFunctions(): readonly HttpFunctionDefinition[] {
  return definitions;
}
