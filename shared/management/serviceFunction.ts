// Registers a service-API function: the same httpFunction, with the service request context built and the
// management services at hand, so each function file is one line of routing.
import type { HttpMethod } from '@azure/functions';

import { httpFunction } from '../http/httpFunction';
import type { JsonResult } from '../http/response';
import { respond } from '../http/response';
import type { Services } from '../services';
import { services } from '../services';
import type { ServiceRequest } from './serviceRequest';
import { serviceRequest } from './serviceRequest';

type Management = Services['management'];

export function serviceFunction(
  name: string,
  method: HttpMethod,
  route: string,
  run: (management: Management, request: ServiceRequest, params: Record<string, string>) => Promise<JsonResult>,
): void {
  httpFunction(name, {
    methods: [method],
    route,
    handler: async (request) => {
      const { management } = await services();
      const context = await serviceRequest(request, (head) => management.auth.authenticate(head));
      return respond(await run(management, context, request.params));
    },
  });
}

/** Individual enrollments and enrollment groups share every operation, under their own paths. */
export const enrollmentResources = [
  { name: 'individualEnrollment', path: 'enrollments', manager: (m: Management) => m.enrollments },
  { name: 'enrollmentGroup', path: 'enrollmentGroups', manager: (m: Management) => m.groups },
] as const;
