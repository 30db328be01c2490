// PUT {idScope}/registrations/{registrationId}/register — a device asks to be provisioned.
import { deviceFunction } from '../shared/registration/deviceFunction';

deviceFunction('deviceRegister', 'PUT', '{idScope}/registrations/{registrationId}/register', (r, req) =>
  r.register(req),
);
