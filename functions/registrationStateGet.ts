// GET registrations/{id}: a device's registration state.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('registrationStateGet', 'GET', 'registrations/{id}', (m, req, p) =>
  m.registrations.get(req, p.id ?? ''),
);
