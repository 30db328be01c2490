// POST registrations/{groupId}/query: the registration states of a group's devices.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('registrationStateQuery', 'POST', 'registrations/{groupId}/query', (m, req, p) =>
  m.registrations.queryGroup(req, p.groupId ?? ''),
);
