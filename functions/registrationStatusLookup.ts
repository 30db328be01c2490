// POST {idScope}/registrations/{registrationId} — a device looks up its current registration state.
// The Functions host tries routes in function-name order, and this template also matches service paths such as
// POST /enrollments/registrations/attestationmechanism; the name sorts after every service function that has such a
// path (individualEnrollment…, enrollmentGroup…, registrationStateQuery), and a dev-host test checks it.
import { deviceFunction } from '../shared/registration/deviceFunction';

deviceFunction('registrationStatusLookup', 'POST', '{idScope}/registrations/{registrationId}', (r, req) =>
  r.statusLookup(req),
);
