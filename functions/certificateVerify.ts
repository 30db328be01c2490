// POST certificates/{name}/verify: prove possession of the CA's key with a certificate it signed for the code.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('certificateVerify', 'POST', 'certificates/{name}/verify', (m, req, p) =>
  m.certificates.verify(req, p.name ?? ''),
);
