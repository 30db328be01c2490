// DELETE enrollments/{id} and enrollmentGroups/{id} (conditional with If-Match). Hub devices stay, as in DPS.
import { enrollmentResources, serviceFunction } from '../shared/management/serviceFunction';

for (const r of enrollmentResources) {
  serviceFunction(`${r.name}Delete`, 'DELETE', `${r.path}/{id}`, (m, req, p) => r.manager(m).delete(req, p.id ?? ''));
}
