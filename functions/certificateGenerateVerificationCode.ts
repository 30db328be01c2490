// POST certificates/{name}/generateVerificationCode: the code a proof-of-possession certificate's CN must carry.
import { serviceFunction } from '../shared/management/serviceFunction';

serviceFunction(
  'certificateGenerateVerificationCode',
  'POST',
  'certificates/{name}/generateVerificationCode',
  (m, req, p) => m.certificates.generateVerificationCode(req, p.name ?? ''),
);
