// DELETE registrations/{id}: forget a registration, so the device provisions afresh.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('registrationStateDelete', 'DELETE', 'registrations/{id}', (m, req, p) =>
  m.registrations.delete(req, p.id ?? ''),
);
