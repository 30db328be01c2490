// GET enrollments/{id} and enrollmentGroups/{id}: the enrollment without its keys.
import { enrollmentResources, serviceFunction } from '../shared/management/serviceFunction';

for (const r of enrollmentResources) {
  serviceFunction(`${r.name}Get`, 'GET', `${r.path}/{id}`, (m, req, p) => r.manager(m).get(req, p.id ?? ''));
}
