// DELETE certificates/{name}: remove a CA certificate (If-Match optional).
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('certificateDelete', 'DELETE', 'certificates/{name}', (m, req, p) =>
  m.certificates.delete(req, p.name ?? ''),
);
