// X.509 attestation: "is this TLS client certificate this device, and by which enrollment?" (reference/dps-protocol.md
// §2.3). The individual enrollment holding the leaf wins and is authoritative; otherwise the enrollment group whose
// signing certificate or verified CA anchors the chain built from the leaf. Every refusal is 401/401002 naming the check.
import type { EnrollmentGroup, IndividualEnrollment } from '../../domain/enrollment';
import { isEnabled } from '../../domain/enrollment';
import type { DpsError } from '../../errors';
import { unauthorized } from '../../errors';
import type { X509CertificateInfo } from '../../domain/registrationState';
import type { ParsedCertificate } from './certificate';
import {
  CertificateCache,
  CertificateError,
  certificateDer,
  certificateInfo,
  describe,
  sha256Thumbprint,
} from './certificate';
import type { ChainLimits } from './chain';
import { CertificatePool, DEFAULT_LIMITS, SignatureCache, buildChain, checkLeaf } from './chain';

/** A CA certificate the service holds (uploaded through the service API), as the verifier needs it. */
export interface HeldCaCertificate {
  name: string;
  /** PEM or base64 DER. */
  certificate: string;
  isVerified: boolean;
}

export type X509HubAuthentication =
  | { type: 'selfSigned'; primaryThumbprint: string; secondaryThumbprint: string | null }
  | { type: 'certificateAuthority' };

export type X509Match = (
  { kind: 'individual'; enrollment: IndividualEnrollment } | { kind: 'group'; enrollment: EnrollmentGroup }
) & {
  leaf: ParsedCertificate;
  /** [leaf, …, anchor]; just [leaf] when an individual enrollment holds the leaf itself. */
  chain: ParsedCertificate[];
  certificateInfo: X509CertificateInfo;
  hubAuthentication: X509HubAuthentication;
};

export interface X509Request {
  /** Base64 DER of the leaf, as the front end forwards it. */
  clientCertificate: string | undefined;
  registrationId: string;
  individual: IndividualEnrollment | undefined;
  groups: readonly EnrollmentGroup[];
  caCertificates: readonly HeldCaCertificate[];
  now: Date;
}

interface Anchor {
  group?: EnrollmentGroup;
  /** When set, only this individual enrollment's caReferences trust the certificate. */
  individual?: IndividualEnrollment;
}

interface Trust {
  groups: readonly EnrollmentGroup[];
  cas: readonly HeldCaCertificate[];
  pool: CertificatePool;
  /** Group anchors by certificate SHA-256. */
  anchors: Map<string, EnrollmentGroup[]>;
  /** Why a certificate some group names cannot anchor (its CA is not verified), by SHA-256. */
  refused: Map<string, string>;
}

/**
 * Holds the per-instance caches: parsed certificates, signature results, and the trust built from the current group
 * list and CA certificates (rebuilt only when those lists change, i.e. when the caches behind them reload).
 */
const NOT_ANCHORED_BY_GROUP = 'The certificate chain is not anchored by an enrollment group.';

/** The leaf is not the individual enrollment's: refused as if the ID had none (see `asIfUnenrolled`). */
class NotThisEnrollment extends CertificateError {}

export class X509Verifier {
  /** Certificates the service holds (CA, group signing): few, and used by every device. */
  private readonly certificates = new CertificateCache();
  /** Devices' leaves, for the polls that follow a PUT: each is used for a few seconds, so few are kept. */
  private readonly leaves = new CertificateCache(1_000);
  private readonly signatures = new SignatureCache();
  private trust: Trust | undefined;

  constructor(private readonly limits: ChainLimits = DEFAULT_LIMITS) {}

  verify(request: X509Request): X509Match {
    try {
      return this.match(request);
    } catch (err) {
      if (err instanceof CertificateError) throw unauthorized(err.message);
      throw err;
    }
  }

  private match({
    clientCertificate,
    registrationId,
    individual,
    groups,
    caCertificates,
    now,
  }: X509Request): X509Match {
    if (clientCertificate === undefined || clientCertificate === '') {
      throw new CertificateError(
        'No client certificate was presented: X.509 attestation needs a TLS client certificate.',
      );
    }
    const leaf = this.leaves.get(clientCertificate, 'The client certificate');
    if (leaf.commonName === undefined) {
      throw new CertificateError(`The client certificate's subject (${leaf.subject}) has no single common name (CN).`);
    }
    // The registration ID is the leaf's subject CN (DPS; the C, C# and Java SDKs derive it from the certificate).
    if (leaf.commonName.toLowerCase() !== registrationId.toLowerCase()) {
      throw new CertificateError(
        `The client certificate's subject CN '${leaf.commonName}' does not match the registration ID '${registrationId}'.`,
      );
    }
    checkLeaf(leaf, now);
    const trust = this.trustFor(groups, caCertificates);

    if (individual) {
      try {
        return this.matchIndividual(leaf, individual, trust, now);
      } catch (err) {
        if (!(err instanceof NotThisEnrollment)) throw err;
        throw this.asIfUnenrolled(leaf, trust, now, err.message);
      }
    }
    const { chain, anchor } = this.groupChain(leaf, trust, now);
    const group = anchor.group;
    if (!group) throw new CertificateError(NOT_ANCHORED_BY_GROUP);
    return {
      kind: 'group',
      enrollment: group,
      leaf,
      chain,
      certificateInfo: certificateInfo(leaf),
      hubAuthentication: { type: 'certificateAuthority' },
    };
  }

  private groupChain(leaf: ParsedCertificate, trust: Trust, now: Date) {
    return buildChain(leaf, trust.pool, (c) => groupAnchor(trust, c), now, this.signatures, this.limits);
  }

  /**
   * A certificate that is not the individual enrollment's gets the answer an ID without one would get (the group
   * path's refusal), so presenting a self-signed certificate with some CN does not tell whether that ID is enrolled.
   * The real reason stays in the refusal's detail, for the operator's event. Only a device whose certificate a group
   * would accept (it holds a valid group certificate) is told that its individual enrollment blocks it.
   */
  private asIfUnenrolled(leaf: ParsedCertificate, trust: Trust, now: Date, reason: string): DpsError {
    try {
      if (!this.groupChain(leaf, trust, now).anchor.group) return unauthorized(NOT_ANCHORED_BY_GROUP, reason);
    } catch (err) {
      if (err instanceof CertificateError) return unauthorized(err.message, reason);
      throw err;
    }
    return unauthorized(reason, reason);
  }

  /**
   * An individual enrollment is authoritative for its registration ID (a disabled one blocks the device even inside
   * an enabled group): the leaf must be one of its client certificates, or chain to a verified CA it references.
   */
  private matchIndividual(
    leaf: ParsedCertificate,
    enrollment: IndividualEnrollment,
    trust: Trust,
    now: Date,
  ): X509Match {
    const name = `the individual enrollment '${enrollment.registrationId}'`;
    if (enrollment.attestation.type !== 'x509') {
      throw new NotThisEnrollment(
        `The device has ${name}, which uses ${enrollment.attestation.type} attestation, not X.509.`,
      );
    }
    const x509 = enrollment.attestation.x509 ?? {};
    // SHA-256 thumbprints of the enrolled certificates, from their DER: they were checked when they were enrolled, and
    // comparing needs no parse (a certificate parse costs more than the rest of a device's verification).
    const held = (['primary', 'secondary'] as const).flatMap((which) => {
      const text = certificateText(x509.clientCertificates, which);
      return text === undefined ? [] : [sha256Thumbprint(certificateDer(text, `${name}'s ${which} certificate`))];
    });
    const info = certificateInfo(leaf);
    // DPS compares the certificate itself, not just its name (reference/dps-protocol.md §2.3).
    if (held.includes(leaf.sha256)) {
      const other = held.find((c) => c !== leaf.sha256);
      return {
        kind: 'individual',
        enrollment,
        leaf,
        chain: [leaf],
        certificateInfo: info,
        // The hub knows the device by its certificate's thumbprints; the other enrolled certificate stays usable too.
        hubAuthentication: {
          type: 'selfSigned',
          primaryThumbprint: leaf.sha256,
          secondaryThumbprint: other ?? null,
        },
      };
    }
    const refs = caReferenceNames(x509);
    if (refs.length === 0) {
      throw new NotThisEnrollment(
        `The client certificate ${describe(leaf)} is not one of ${name}'s client certificates.`,
      );
    }
    const anchorOf = (cert: ParsedCertificate): Anchor | string | undefined => {
      for (const ref of refs) {
        const ca = trust.cas.find((c) => c.name.toLowerCase() === ref.toLowerCase());
        if (!ca) continue;
        const parsed = this.certificates.fromText(ca.certificate, `CA certificate '${ca.name}'`);
        if (parsed.sha256 !== cert.sha256) continue;
        if (!ca.isVerified) return `the CA certificate '${ca.name}' is not verified (proof of possession is pending)`;
        return { individual: enrollment };
      }
      return undefined;
    };
    const { chain } = buildChain(leaf, trust.pool, anchorOf, now, this.signatures, this.limits);
    return {
      kind: 'individual',
      enrollment,
      leaf,
      chain,
      certificateInfo: info,
      hubAuthentication: { type: 'certificateAuthority' },
    };
  }

  private trustFor(groups: readonly EnrollmentGroup[], cas: readonly HeldCaCertificate[]): Trust {
    if (this.trust && this.trust.groups === groups && this.trust.cas === cas) return this.trust;
    const held: ParsedCertificate[] = [];
    const anchors = new Map<string, EnrollmentGroup[]>();
    const refused = new Map<string, string>();
    const caByName = new Map<string, { ca: HeldCaCertificate; parsed: ParsedCertificate }>();
    for (const ca of cas) {
      // A stored certificate that no longer parses (it was checked at upload) must not break every registration.
      const parsed = this.tryParse(ca.certificate, `CA certificate '${ca.name}'`);
      if (!parsed) continue;
      held.push(parsed);
      caByName.set(ca.name.toLowerCase(), { ca, parsed });
    }
    const addAnchor = (cert: ParsedCertificate, group: EnrollmentGroup) => {
      const list = anchors.get(cert.sha256);
      if (list) list.push(group);
      else anchors.set(cert.sha256, [group]);
    };
    for (const group of groups) {
      if (group.attestation.type !== 'x509') continue;
      const x509 = group.attestation.x509 ?? {};
      for (const which of ['primary', 'secondary'] as const) {
        const text = certificateText(x509.signingCertificates, which);
        const parsed = text === undefined ? undefined : this.tryParse(text, 'signing certificate');
        if (!parsed) continue;
        held.push(parsed);
        addAnchor(parsed, group);
      }
      for (const ref of caReferenceNames(x509)) {
        const entry = caByName.get(ref.toLowerCase());
        if (!entry) continue;
        if (entry.ca.isVerified) addAnchor(entry.parsed, group);
        else {
          refused.set(
            entry.parsed.sha256,
            `the CA certificate '${entry.ca.name}' is not verified (proof of possession is pending)`,
          );
        }
      }
    }
    this.trust = { groups, cas, pool: new CertificatePool(held), anchors, refused };
    return this.trust;
  }

  private tryParse(text: string, what: string): ParsedCertificate | undefined {
    try {
      return this.certificates.fromText(text, what);
    } catch {
      return undefined;
    }
  }
}

/** The group a certificate anchors (an enabled one first when several name it), a refusal, or nothing. */
function groupAnchor(trust: Trust, cert: ParsedCertificate): Anchor | string | undefined {
  const groups = trust.anchors.get(cert.sha256);
  if (groups) return { group: groups.find(isEnabled) ?? groups[0] };
  return trust.refused.get(cert.sha256);
}

function certificateText(pair: unknown, which: 'primary' | 'secondary'): string | undefined {
  const entry = (pair as Record<string, { certificate?: unknown } | undefined> | undefined)?.[which];
  return typeof entry?.certificate === 'string' ? entry.certificate : undefined;
}

function caReferenceNames(x509: Record<string, unknown>): string[] {
  const refs = x509.caReferences as { primary?: unknown; secondary?: unknown } | undefined;
  return [refs?.primary, refs?.secondary].filter((r): r is string => typeof r === 'string' && r !== '');
}
