// PUT enrollments/{id} and enrollmentGroups/{id}: create or update (conditional with If-Match).
import { enrollmentResources, serviceFunction } from '../shared/management/serviceFunction';

for (const r of enrollmentResources) {
  serviceFunction(`${r.name}Put`, 'PUT', `${r.path}/{id}`, (m, req, p) => r.manager(m).put(req, p.id ?? ''));
}
