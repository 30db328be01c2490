// GET {idScope}/registrations/{registrationId}/operations/{operationId} — a device polls its registration.
import { deviceFunction } from '../shared/registration/deviceFunction';

deviceFunction(
  'deviceOperationStatus',
  'GET',
  '{idScope}/registrations/{registrationId}/operations/{operationId}',
  (r, req, p) => r.operationStatus(req, p.operationId ?? ''),
);
