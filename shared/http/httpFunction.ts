// Registers an HTTP function with the Functions host and records it, so the dev host serves the very same table.
import { app } from '@azure/functions';
import type { HttpHandler, HttpMethod, HttpResponseInit } from '@azure/functions';

import { DpsError, toHttpResponse } from '../errors';

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

export interface CompiledRoute {
  /** Matches a URL's (still encoded) path; group i + 1 captures parameter `names[i]`. */
  pattern: RegExp;
  names: string[];
  /** Each segment's kind, for precedence: 0 literal, 1 parameter, 2 catch-all (`{*rest}`). */
  kinds: number[];
}

/** A route template as the Functions host reads it: case-insensitive, and tolerant of a trailing slash. */
export function compileRoute(route: string): CompiledRoute {
  const names: string[] = [];
  const kinds: number[] = [];
  const source = route
    .split('/')
    .filter((s) => s !== '')
    .map((segment) => {
      const param = /^\{(\*?)(\w+)\??\}$/.exec(segment);
      if (param?.[2]) {
        names.push(param[2]);
        kinds.push(param[1] ? 2 : 1);
        // A catch-all takes the rest of the path, slashes included, or nothing at all.
        return param[1] ? '(?:/(.*))?' : '/([^/]+)';
      }
      kinds.push(0);
      return `/${segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`;
    })
    .join('');
  // The service SDK posts to `/enrollments/`.
  return { pattern: new RegExp(`^${source}/?$`, 'i'), names, kinds };
}

/** The client's path goes into the message, so only this much of it: a URL can be kilobytes long. */
const MAX_ECHOED_PATH = 200;

/**
 * The answer for a request no function serves: 405 with `Allow` when some route serves the path with other methods,
 * else 404. The catch-all function gives it (methods are route constraints, so the Functions host falls through to
 * the catch-all on a wrong method too), and the dev host when no catch-all is registered.
 */
export function unmatchedRoute(
  method: string,
  url: string,
  functions: readonly HttpFunctionDefinition[] = definitions,
): HttpResponseInit {
  const { pathname } = new URL(url, 'https://localhost');
  const allowed = new Set<string>();
  for (const f of functions) {
    const route = compileRoute(f.route);
    if (!route.kinds.includes(2) && route.pattern.test(pathname)) f.methods.forEach((m) => allowed.add(m));
  }
  let path = pathname;
  try {
    path = decodeURIComponent(pathname);
  } catch {
    // keep it encoded
  }
  if (path.length > MAX_ECHOED_PATH) path = `${path.slice(0, MAX_ECHOED_PATH)}…`;
  const verb = method.slice(0, 16);
  if (allowed.size > 0) {
    const allow = [...allowed].join(', ');
    return toHttpResponse(new DpsError(405, 405000, `Method ${verb} is not allowed on ${path}.`, { Allow: allow }));
  }
  return toHttpResponse(new DpsError(404, 404000, `No operation is served at ${verb} ${path}.`));
}
