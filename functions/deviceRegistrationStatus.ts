// POST {idScope}/registrations/{registrationId} — a device looks up its current registration state.
import { deviceFunction } from '../shared/registration/deviceFunction';

deviceFunction('deviceRegistrationStatus', 'POST', '{idScope}/registrations/{registrationId}', (r, req) =>
  r.statusLookup(req),
);
