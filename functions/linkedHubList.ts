// GET linkedHubs: the linked IoT hubs (without connection strings).
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('linkedHubList', 'GET', 'linkedHubs', (m, req) => m.configuration.listLinkedHubs(req));
