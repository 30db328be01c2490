// POST enrollments/query and enrollmentGroups/query: paged queries (x-ms-max-item-count, x-ms-continuation).
import { enrollmentResources, serviceFunction } from '../shared/management/serviceFunction';

for (const r of enrollmentResources) {
  serviceFunction(`${r.name}Query`, 'POST', `${r.path}/query`, (m, req) => r.manager(m).query(req));
}
