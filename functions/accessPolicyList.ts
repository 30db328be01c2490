// GET accessPolicies: shared access policies and their rights (never keys).
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('accessPolicyList', 'GET', 'accessPolicies', (m, req) => m.configuration.listAccessPolicies(req));
