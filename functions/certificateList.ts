// GET certificates: the CA certificates (ARM CertificateListDescription, {value: [...]}).
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction('certificateList', 'GET', 'certificates', (m, req) => m.certificates.list(req));
