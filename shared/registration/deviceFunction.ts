// Registers a device-API function: the same httpFunction, with the device request context built and the
// registration service at hand, so each function file is one line of routing.
import type { HttpMethod } from '@azure/functions';

import { httpFunction } from '../http/httpFunction';
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
      return respond(await run(registration, await deviceRequest(request, config.clientCertHeader), request.params));
    },
  });
}
