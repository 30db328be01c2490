// POST enrollments and enrollmentGroups: bulk create / update / updateIfMatchETag / delete.
import { enrollmentResources, serviceFunction } from '../shared/management/serviceFunction';

for (const r of enrollmentResources) {
  serviceFunction(`${r.name}Bulk`, 'POST', r.path, (m, req) => r.manager(m).bulk(req));
}
