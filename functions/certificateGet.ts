// GET certificates/{name}: one CA certificate, with its ETag and verification status.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('certificateGet', 'GET', 'certificates/{name}', (m, req, p) => m.certificates.get(req, p.name ?? ''));
