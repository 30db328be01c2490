// PUT certificates/{name}: upload a root or intermediate CA certificate (PEM or base64 DER), or replace it.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('certificatePut', 'PUT', 'certificates/{name}', (m, req, p) => m.certificates.put(req, p.name ?? ''));
