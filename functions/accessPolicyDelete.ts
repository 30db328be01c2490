// DELETE accessPolicies/{name}.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('accessPolicyDelete', 'DELETE', 'accessPolicies/{name}', (m, req, p) =>
  m.configuration.deleteAccessPolicy(req, p.name ?? ''),
);
