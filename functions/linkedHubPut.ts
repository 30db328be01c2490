// PUT linkedHubs/{hostName}: link an IoT hub, or change its weight, location or allocation participation.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('linkedHubPut', 'PUT', 'linkedHubs/{hostName}', (m, req, p) =>
  m.configuration.putLinkedHub(req, p.hostName ?? ''),
);
