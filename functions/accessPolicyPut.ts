// PUT accessPolicies/{name}: create or replace a shared access policy; answers with its keys, once.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('accessPolicyPut', 'PUT', 'accessPolicies/{name}', (m, req, p) =>
  m.configuration.putAccessPolicy(req, p.name ?? ''),
);
