// DELETE linkedHubs/{hostName}: unlink an IoT hub (its devices stay there).
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('linkedHubDelete', 'DELETE', 'linkedHubs/{hostName}', (m, req, p) =>
  m.configuration.deleteLinkedHub(req, p.hostName ?? ''),
);
