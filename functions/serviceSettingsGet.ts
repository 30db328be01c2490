// GET serviceConfiguration: ID scope, default allocation policy, accepted service host names.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('serviceSettingsGet', 'GET', 'serviceConfiguration', (m, req) => m.configuration.getSettings(req));
