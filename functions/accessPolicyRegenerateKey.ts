// POST accessPolicies/{name}/regenerateKey {keyType}: rotate a policy key; answers with the keys.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('accessPolicyRegenerateKey', 'POST', 'accessPolicies/{name}/regenerateKey', (m, req, p) =>
  m.configuration.regenerateAccessPolicyKey(req, p.name ?? ''),
);
