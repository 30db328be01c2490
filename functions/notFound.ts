// Any path or method no other function serves: a DPS-shaped 404 (405 with Allow on a served path) instead of the
// Functions host's empty 404. The host tries routes in function-name order (case-insensitive), not by specificity
// (Azure/azure-functions-nodejs-library#300), so this name must sort after every other; a test checks it.
import type { HttpMethod } from '@azure/functions';

import { httpFunction, unmatchedRoute } from '../shared/http/httpFunction';

const ALL_METHODS: HttpMethod[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT'];

httpFunction('zzzNotFound', {
  methods: ALL_METHODS,
  route: '{*path}',
  handler: (request) => Promise.resolve(unmatchedRoute(request.method, request.url)),
});
