// POST enrollments/{id}/attestationmechanism (and for groups): the attestation with its keys.
import { enrollmentResources, serviceFunction } from '../shared/management/serviceFunction';

for (const r of enrollmentResources) {
  serviceFunction(`${r.name}Attestation`, 'POST', `${r.path}/{id}/attestationmechanism`, (m, req, p) =>
    r.manager(m).attestation(req, p.id ?? ''),
  );
}
