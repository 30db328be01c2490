// POST dataKeys/rewrap: re-wrap the secrets' data keys with the newest version of the key-encryption key (beyond DPS;
// run after rotating the Key Vault key).
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('dataKeysRewrap', 'POST', 'dataKeys/rewrap', (m, req) => m.configuration.rewrapDataKeys(req));
