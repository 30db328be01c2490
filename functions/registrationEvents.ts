// GET registrations/{id}/events: a device's recent events (beyond DPS), so an operator can see why it failed.
// Three segments: no device route (GET …/operations/{operationId} has four) can shadow it (README "Route order").
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('registrationEvents', 'GET', 'registrations/{id}/events', (m, req, p) =>
  m.registrations.listEvents(req, p.id ?? ''),
);
