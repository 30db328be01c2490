// The X.509 implementation of the attestation seam: the device's leaf (from the front end's header) verified against
// its individual enrollment or the group anchoring its chain, on every request (no `recent` shortcut, as DPS).
import type { Attestation, AttestationCandidates, Attestor } from '../attestation';
import type { DeviceRequest } from '../../registration/deviceRequest';
import type { HeldCaCertificate } from './verifier';
import { certificateInfo as x509CertificateInfo } from './certificate';
import { X509Verifier } from './verifier';

export class X509Attestor implements Attestor {
  readonly mechanism = 'x509';

  constructor(
    /** The uploaded CA certificates (cached per instance; the same array until it reloads, so trust is reused). */
    private readonly caCertificates: { get(): Promise<readonly HeldCaCertificate[]> },
    private readonly verifier = new X509Verifier(),
  ) {}

  async attest(request: DeviceRequest, candidates: AttestationCandidates, now: Date): Promise<Attestation> {
    const match = this.verifier.verify({
      clientCertificate: request.clientCertificate,
      registrationId: request.registrationId,
      individual: candidates.individual,
      groups: candidates.groups,
      caCertificates: await this.caCertificates.get(),
      now,
    });
    const { certificateInfo } = match;
    const auth = match.hubAuthentication;
    // IoT Hub takes SHA-1 or SHA-256 thumbprints: with one enrolled certificate, both of the leaf's are registered.
    const hubAuthentication =
      auth.type === 'selfSigned' ? { ...auth, secondaryThumbprint: auth.secondaryThumbprint ?? match.leaf.sha1 } : auth;
    if (match.kind === 'individual') {
      return {
        kind: 'individual',
        enrollment: match.enrollment,
        hubAuthentication,
        registrationFields: { x509: { certificateInfo } },
      };
    }
    const enrollmentGroupId = match.enrollment.enrollmentGroupId;
    // X509RegistrationResult.signingCertificateInfo (the SDKs' models read it): the group's certificate, signing
    // certificate or referenced CA, that anchored the chain.
    const anchor = match.chain[match.chain.length - 1];
    return {
      kind: 'group',
      enrollment: match.enrollment,
      enrollmentGroupId,
      hubAuthentication,
      registrationFields: {
        x509: {
          enrollmentGroupId,
          certificateInfo,
          ...(anchor && anchor !== match.leaf ? { signingCertificateInfo: x509CertificateInfo(anchor) } : {}),
        },
      },
    };
  }
}
