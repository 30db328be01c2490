// Registers a device-API function: the same httpFunction, with the device request context built and the
// registration service at hand, so each function file is one line of routing.
import type { HttpMethod, HttpRequest } from '@azure/functions';

import { httpFunction } from '../http/httpFunction';
import { isPlainObject } from '../http/request';
import type { JsonResult } from '../http/response';
import { respond } from '../http/response';
import { services } from '../services';
import type { DeviceRequest } from './deviceRequest';
import { deviceRequest } from './deviceRequest';
import type { RegistrationService } from './service';

export function deviceFunction(
  name: string,
  method: HttpMethod,
  route: string,
  run: (
    registration: RegistrationService,
    request: DeviceRequest,
    params: Record<string, string>,
  ) => Promise<JsonResult>,
): void {
  httpFunction(name, {
    methods: [method],
    route,
    handler: async (request) => {
      const { registration, config } = await services();
      const result = await run(registration, await deviceRequest(request, config.clientCertHeader), request.params);
      return respond(withOperationLocation(result, request));
    },
  });
}

/**
 * The spec's 202 answers (RegisterDevice, OperationStatusLookup) carry `Location`, the operation's URL: no official
 * SDK reads it, but a generic long-running-operation poller follows it (the register URL itself has no GET).
 */
function withOperationLocation(result: JsonResult, request: HttpRequest): JsonResult {
  const operationId = result.status === 202 && isPlainObject(result.body) ? result.body.operationId : undefined;
  if (typeof operationId !== 'string') return result;
  const { idScope = '', registrationId = '' } = request.params;
  const path = [idScope, 'registrations', registrationId, 'operations', operationId].map(encodeURIComponent);
  const location = new URL(`/${path.join('/')}`, request.url);
  const apiVersion = request.query.get('api-version');
  if (apiVersion !== null) location.searchParams.set('api-version', apiVersion);
  return { ...result, headers: { ...result.headers, Location: location.toString() } };
}
