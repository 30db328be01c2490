// Registers an HTTP function with the Functions host and records it, so the dev host serves the very same table.
import { app } from '@azure/functions';
import type { HttpHandler, HttpMethod, HttpResponseInit } from '@azure/functions';

import { safeDecode } from '../encoding';
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
  /** The route's parameters (decoded) if it serves this URL path (still encoded), else undefined. */
  match(pathname: string): Record<string, string> | undefined;
  /** Whether it ends in a `{*rest}` catch-all. */
  catchAll: boolean;
}

/** Compiled once per template: the dev host and every unmatched request (`unmatchedRoute`) use the same table. */
const compiledRoutes = new Map<string, CompiledRoute>();

/**
 * A route template as the Functions host reads it: case-insensitive, tolerant of a trailing slash, `{name}` and
 * `{*rest}` (the rest of the path, slashes included). Constraints are refused rather than silently ignored.
 */
export function compileRoute(route: string): CompiledRoute {
  let compiled = compiledRoutes.get(route);
  if (!compiled) {
    compiled = compile(route);
    compiledRoutes.set(route, compiled);
  }
  return compiled;
}

function compile(route: string): CompiledRoute {
  const names: string[] = [];
  let catchAll = false;
  const source = route
    .split('/')
    .filter((s) => s !== '')
    .map((segment) => {
      const param = /^\{(\*?)(\w+)\??\}$/.exec(segment);
      if (!param?.[2]) {
        if (/[{}]/.test(segment)) throw new Error(`Route '${route}': the dev host does not support '${segment}'.`);
        return `/${segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`;
      }
      names.push(param[2]);
      if (param[1]) catchAll = true;
      return param[1] ? '(?:/(.*))?' : '/([^/]+)';
    })
    .join('');
  // The service SDK posts to `/enrollments/`.
  const pattern = new RegExp(`^${source}/?$`, 'i');
  return {
    catchAll,
    match(pathname) {
      const found = pattern.exec(pathname);
      if (!found) return undefined;
      return Object.fromEntries(
        names.map((name, i) => {
          const raw = found[i + 1] ?? '';
          return [name, safeDecode(raw) ?? raw];
        }),
      );
    },
  };
}

/** Function-name order, ignoring case: the order in which the Functions host tries routes (first match wins). */
export const byFunctionName = (a: HttpFunctionDefinition, b: HttpFunctionDefinition): number => {
  const [x, y] = [a.name.toUpperCase(), b.name.toUpperCase()];
  return x < y ? -1 : x > y ? 1 : 0;
};

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
    if (!route.catchAll && route.match(pathname)) f.methods.forEach((m) => allowed.add(m));
  }
  let path = safeDecode(pathname) ?? pathname;
  if (path.length > MAX_ECHOED_PATH) path = `${path.slice(0, MAX_ECHOED_PATH)}…`;
  const verb = method.slice(0, 16);
  if (allowed.size > 0) {
    const allow = [...allowed].join(', ');
    return toHttpResponse(new DpsError(405, 405000, `Method ${verb} is not allowed on ${path}.`, { Allow: allow }));
  }
  return toHttpResponse(new DpsError(404, 404000, `No operation is served at ${verb} ${path}.`));
}
