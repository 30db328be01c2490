// Chain building and checking: from a device's leaf up through the certificates the service holds (group signing
// certificates, uploaded CA and intermediate certificates) to the first one that anchors it. Bounded in depth and in
// certificates tried, loop-safe, and every refusal names the check that failed.
import type { ParsedCertificate } from './certificate';
import { CertificateError, allowsClientAuth, describe } from './certificate';

export interface ChainLimits {
  /** Certificates in a chain, leaf and anchor included. */
  maxDepth: number;
  /** Candidate issuers examined for one chain, whatever the outcome: bounds the work a crafted pool can cause. */
  maxTries: number;
}

export const DEFAULT_LIMITS: ChainLimits = { maxDepth: 8, maxTries: 64 };

/** What the caller makes of a certificate: an anchor (T), a reason it cannot anchor (string), or neither. */
export type AnchorLookup<T> = (cert: ParsedCertificate) => T | string | undefined;

/** The certificates a chain may be built through, indexed by subject. */
export class CertificatePool {
  private readonly bySubject = new Map<string, ParsedCertificate[]>();

  constructor(certificates: Iterable<ParsedCertificate>) {
    const seen = new Set<string>();
    for (const cert of certificates) {
      if (seen.has(cert.sha256)) continue;
      seen.add(cert.sha256);
      const list = this.bySubject.get(cert.subject);
      if (list) list.push(cert);
      else this.bySubject.set(cert.subject, [cert]);
    }
  }

  issuersOf(cert: ParsedCertificate): readonly ParsedCertificate[] {
    return this.bySubject.get(cert.issuer) ?? [];
  }
}

/**
 * Signature checks of CA certificates by (child, issuer) pair, per instance: an intermediate is verified once for all
 * its devices. A device's own certificate is checked every time: it is new to the cache, and would only evict CAs.
 */
export class SignatureCache {
  private readonly results = new Map<string, boolean>();

  constructor(private readonly maxEntries = 1_000) {}

  verifies(child: ParsedCertificate, issuer: ParsedCertificate, cache: boolean): boolean {
    const key = `${child.sha256}/${issuer.sha256}`;
    const hit = cache ? this.results.get(key) : undefined;
    if (hit !== undefined) return hit;
    let ok: boolean;
    try {
      // Not X509Certificate.checkIssued: it also refuses issuers without keyCertSign, which caProblem reports by name.
      ok = child.x509.verify(issuer.publicKey);
    } catch {
      ok = false;
    }
    if (!cache) return ok;
    if (this.results.size >= this.maxEntries) {
      const oldest = this.results.keys().next();
      if (!oldest.done) this.results.delete(oldest.value);
    }
    this.results.set(key, ok);
    return ok;
  }
}

/** The device's own certificate: validity now, an accepted key, and usages that allow TLS client authentication. */
export function checkLeaf(leaf: ParsedCertificate, now: Date): void {
  const name = `The device certificate ${describe(leaf)}`;
  const validity = validityProblem(leaf, now);
  if (validity) throw new CertificateError(`${name} ${validity}.`);
  if (leaf.keyProblem) throw new CertificateError(`${name} has ${leaf.keyProblem}.`);
  const unknown = unknownCritical(leaf);
  if (unknown) throw new CertificateError(`${name} has ${unknown}.`);
  if (leaf.keyUsage && !leaf.keyUsage.includes('digitalSignature')) {
    throw new CertificateError(`${name} has a key usage without digitalSignature.`);
  }
  if (!allowsClientAuth(leaf)) {
    throw new CertificateError(`${name} has an extended key usage without clientAuth.`);
  }
}

/**
 * The chain [leaf, …, anchor] to the nearest certificate `anchorOf` accepts, checking every link: the issuer's name,
 * the signature, and each CA's validity, basicConstraints CA:TRUE and path length, keyCertSign and key strength.
 * Nearer anchors win (DPS tries the first intermediate, then the next, up to the root). Throws CertificateError naming
 * the first failed check, or saying where the chain ends when nothing anchors it. The leaf is checked by checkLeaf.
 */
export function buildChain<T>(
  leaf: ParsedCertificate,
  pool: CertificatePool,
  anchorOf: AnchorLookup<T>,
  now: Date,
  signatures: SignatureCache,
  limits: ChainLimits = DEFAULT_LIMITS,
): { chain: ParsedCertificate[]; anchor: T } {
  const problems: string[] = [];
  let tries = 0;
  let deepest = leaf;

  const search = (path: ParsedCertificate[]): { chain: ParsedCertificate[]; anchor: T } | undefined => {
    const child = path[path.length - 1] ?? leaf;
    const usable: ParsedCertificate[] = [];
    for (const issuer of pool.issuersOf(child)) {
      if (path.some((c) => c.sha256 === issuer.sha256)) continue; // a loop, or a self-signed certificate's own entry
      if (++tries > limits.maxTries) {
        throw new CertificateError(
          `The certificate chain could not be built: more than ${limits.maxTries} candidate issuers were tried.`,
        );
      }
      if (!signatures.verifies(child, issuer, child !== leaf)) {
        problems.push(`the signature of ${describe(child)} does not verify with the key of ${describe(issuer)}`);
        continue;
      }
      // Intermediates between this issuer and the leaf, for its path length constraint.
      const problem = caProblem(issuer, path.length - 1, now);
      if (problem) {
        problems.push(problem);
        continue;
      }
      usable.push(issuer);
    }
    for (const issuer of usable) {
      deepest = issuer;
      const anchor = anchorOf(issuer);
      if (typeof anchor === 'string') problems.push(anchor);
      else if (anchor !== undefined) return { chain: [...path, issuer], anchor };
    }
    if (usable.length > 0 && path.length + 1 >= limits.maxDepth) {
      problems.push(`the chain is longer than ${limits.maxDepth} certificates`);
      return undefined;
    }
    for (const issuer of usable) {
      const found = search([...path, issuer]);
      if (found) return found;
    }
    return undefined;
  };

  const found = search([leaf]);
  if (found) return found;
  if (problems.length > 0) throw new CertificateError(`The certificate chain is not valid: ${problems[0]}.`);
  if (deepest === leaf) {
    throw new CertificateError(
      `The certificate chain is not anchored: no enrollment group signing certificate or uploaded CA certificate ` +
        `issued ${describe(leaf)} (its issuer is ${leaf.issuer.split('\n').join(', ')}).`,
    );
  }
  throw new CertificateError(
    `The certificate chain is not anchored: it ends at ${describe(deepest)}, which is neither an enabled ` +
      `enrollment group's signing certificate nor a verified CA certificate that a group references.`,
  );
}

/** Why this certificate cannot issue for a chain with `below` intermediates under it (undefined if it can). */
function caProblem(cert: ParsedCertificate, below: number, now: Date): string | undefined {
  const name = `the CA certificate ${describe(cert)}`;
  const validity = validityProblem(cert, now);
  if (validity) return `${name} ${validity}`;
  if (!cert.basicConstraints?.ca) return `${name} is not a CA (basicConstraints CA:TRUE is missing)`;
  const { pathLength } = cert.basicConstraints;
  if (pathLength !== undefined && below > pathLength) {
    return `${name} allows a path length of ${pathLength}, but ${below} intermediate certificates follow it`;
  }
  if (cert.keyUsage && !cert.keyUsage.includes('keyCertSign')) return `${name} has a key usage without keyCertSign`;
  if (cert.keyProblem) return `${name} has ${cert.keyProblem}`;
  if (!allowsClientAuth(cert)) return `${name} has an extended key usage without clientAuth`;
  const unknown = unknownCritical(cert);
  if (unknown) return `${name} has ${unknown}`;
  return undefined;
}

const unknownCritical = (cert: ParsedCertificate): string | undefined =>
  cert.unknownCriticalExtensions.length > 0
    ? `a critical extension this service does not support (${cert.unknownCriticalExtensions.join(', ')})`
    : undefined;

function validityProblem(cert: ParsedCertificate, now: Date): string | undefined {
  if (now < cert.notBefore) return `is not valid before ${cert.notBefore.toISOString()}`;
  if (now > cert.notAfter) return `expired at ${cert.notAfter.toISOString()}`;
  return undefined;
}
