// PUT serviceConfiguration {defaultAllocationPolicy}.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('serviceSettingsPut', 'PUT', 'serviceConfiguration', (m, req) => m.configuration.putSettings(req));
