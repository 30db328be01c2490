// One X.509 certificate, parsed once: node:crypto for the DER, names, key and signatures; jsrsasign for what
// node:crypto does not expose (basic constraints with path length, key usage, extended key usage).
import { X509Certificate, createHash } from 'node:crypto';
import type { KeyObject } from 'node:crypto';

import { ASN1HEX, X509 } from 'jsrsasign';

import type { X509CertificateInfo } from '../../domain/registrationState';

/** A certificate that cannot be used, with the reason a person can act on. */
export class CertificateError extends Error {}

/** Far above any real certificate (RSA-4096 with a long chain of extensions is ~2 KB), so parsing stays cheap. */
export const MAX_CERTIFICATE_BYTES = 12 * 1024;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const CLIENT_AUTH = ['clientAuth', '1.3.6.1.5.5.7.3.2', 'anyExtendedKeyUsage', '2.5.29.37.0'];
/**
 * Extensions a critical flag may mark without refusing the certificate: those checked here (basic constraints, key
 * usages) and the informational or policy ones any chain validator accepts (names, key identifiers, policies, CRL and
 * authority information). Name and policy constraints are accepted but not enforced.
 */
const KNOWN_EXTENSIONS = new Set([
  '2.5.29.9',
  '2.5.29.14',
  '2.5.29.15',
  '2.5.29.17',
  '2.5.29.18',
  '2.5.29.19',
  '2.5.29.30',
  '2.5.29.31',
  '2.5.29.32',
  '2.5.29.33',
  '2.5.29.35',
  '2.5.29.36',
  '2.5.29.37',
  '2.5.29.46',
  '2.5.29.54',
  '1.3.6.1.5.5.7.1.1',
  '1.3.6.1.5.5.7.1.11',
]);

export interface ParsedCertificate {
  readonly x509: X509Certificate;
  readonly publicKey: KeyObject;
  /** Upper-case hex, no separators, as DPS and IoT Hub show thumbprints. */
  readonly sha1: string;
  readonly sha256: string;
  /** Node's multi-line distinguished names, used to match a certificate's issuer to its issuer's subject. */
  readonly subject: string;
  readonly issuer: string;
  readonly commonName: string | undefined;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly serialNumber: string;
  readonly version: number;
  /** basicConstraints: undefined when the extension is absent. */
  readonly basicConstraints: { ca: boolean; pathLength?: number } | undefined;
  /** keyUsage names (jsrsasign's: digitalSignature, keyCertSign…); undefined when absent. */
  readonly keyUsage: readonly string[] | undefined;
  /** extendedKeyUsage names or OIDs; undefined when absent. */
  readonly extendedKeyUsage: readonly string[] | undefined;
  /** Why the key is not acceptable (RSA < 2048, a curve other than P-256/P-384, another algorithm); else undefined. */
  readonly keyProblem: string | undefined;
  /** Critical extensions this service does not know: RFC 5280 §4.2 says such a certificate must be refused. */
  readonly unknownCriticalExtensions: readonly string[];
}

/**
 * The DER of a certificate given as PEM or base64 DER (DPS accepts both, in enrollments and CA uploads).
 * Throws CertificateError with `what` named when it is neither.
 */
export function certificateDer(text: string, what: string): Buffer {
  const trimmed = text.trim();
  const blocks = trimmed.split('-----BEGIN CERTIFICATE-----').length - 1;
  if (blocks > 1) {
    throw new CertificateError(
      `${what} holds ${blocks} certificates: give one (each CA certificate under its own name).`,
    );
  }
  const pem = /^-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(trimmed);
  const body = (pem ? (pem[1] ?? '') : trimmed).replace(/\s+/g, '');
  if (body === '' || !BASE64.test(body) || body.length % 4 !== 0) {
    throw new CertificateError(`${what} is not a PEM or base64 DER X.509 certificate.`);
  }
  return Buffer.from(body, 'base64');
}

/** Parses a DER certificate; anything node:crypto or the extension reader refuses is a CertificateError. */
export function parseCertificate(der: Buffer, what: string): ParsedCertificate {
  if (der.length > MAX_CERTIFICATE_BYTES) {
    throw new CertificateError(`${what} is larger than ${MAX_CERTIFICATE_BYTES} bytes.`);
  }
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch {
    throw new CertificateError(`${what} is not a valid DER X.509 certificate (malformed or truncated).`);
  }
  // Trailing bytes after the certificate would be ignored by OpenSSL; a forwarded leaf must be exactly one certificate.
  if (x509.raw.length !== der.length) {
    throw new CertificateError(`${what} is not a valid DER X.509 certificate (trailing data).`);
  }
  let ext: ReturnType<typeof extensions>;
  try {
    ext = extensions(der, x509.subject);
  } catch {
    throw new CertificateError(`${what} has extensions that cannot be read.`);
  }
  const publicKey = x509.publicKey;
  return {
    x509,
    publicKey,
    sha1: x509.fingerprint.replace(/:/g, ''),
    sha256: x509.fingerprint256.replace(/:/g, ''),
    subject: x509.subject,
    issuer: x509.issuer,
    notBefore: new Date(x509.validFrom),
    notAfter: new Date(x509.validTo),
    serialNumber: x509.serialNumber,
    keyProblem: keyProblem(publicKey),
    ...ext,
  };
}

/** jsrsasign's extension decoders, given each value (they keep no state when given one). */
const DECODER = new X509();

/** TBSCertificate's `[0] EXPLICIT Version DEFAULT v1` (0 = v1, 2 = v3), as the certificate's version number. */
function versionOf(hex: string): number {
  const tbs = ASN1HEX.getChildIdx(hex, 0)[0] ?? 0;
  const first = ASN1HEX.getChildIdx(hex, tbs)[0] ?? 0;
  if (hex.substring(first, first + 2) !== 'a0') return 1;
  const inner = ASN1HEX.getChildIdx(hex, first)[0] ?? 0;
  const value = parseInt(ASN1HEX.getV(hex, inner), 16);
  if (hex.substring(inner, inner + 2) !== '02' || !(value >= 0 && value <= 2)) throw new Error('malformed version');
  return value + 1;
}

function extensions(
  der: Buffer,
  subject: string,
): Pick<
  ParsedCertificate,
  'basicConstraints' | 'keyUsage' | 'extendedKeyUsage' | 'commonName' | 'version' | 'unknownCriticalExtensions'
> {
  const hex = der.toString('hex');
  const extensionsByOid = extensionValues(hex);
  // The extensions read here must be exactly one DER element; others are only looked at for their criticality.
  const value = (oid: string): [string, boolean] | undefined => {
    const ext = extensionsByOid.get(oid);
    if (ext && !ASN1HEX.isASN1HEX(ext.value)) throw new Error(`the extension ${oid} is not one DER element`);
    return ext ? [ext.value, ext.critical] : undefined;
  };
  const bcExt = value('2.5.29.19');
  const kuExt = value('2.5.29.15');
  const ekuExt = value('2.5.29.37');
  const bc = bcExt ? basicConstraints(bcExt[0]) : undefined;
  const ku = kuExt ? (DECODER.getExtKeyUsage(...kuExt) as { names?: string[] }) : undefined;
  const eku = ekuExt ? (DECODER.getExtExtKeyUsage(...ekuExt) as { array?: string[] }) : undefined;
  // Node's subject: one RDN per line, multi-valued RDNs joined by ' + ', values escaped as RFC 2253 says (a literal
  // '+' is '\+'), so the split is exact. An escaped value keeps its escapes: it can't be a registration ID anyway.
  const cn = subject
    .split('\n')
    .flatMap((rdn) => rdn.split(' + '))
    .filter((a) => a.startsWith('CN='))
    .map((a) => a.slice(3));
  return {
    version: versionOf(hex),
    unknownCriticalExtensions: [...extensionsByOid]
      .filter(([oid, ext]) => ext.critical && !KNOWN_EXTENSIONS.has(oid))
      .map(([oid]) => oid),
    basicConstraints: bc
      ? { ca: bc.cA === true, ...(typeof bc.pathLen === 'number' ? { pathLength: bc.pathLen } : {}) }
      : undefined,
    keyUsage: ku ? (ku.names ?? []) : undefined,
    extendedKeyUsage: eku ? (eku.array ?? []) : undefined,
    // A subject with several CNs has no single registration ID.
    commonName: cn.length === 1 ? cn[0] : undefined,
  };
}

/**
 * The extensions' values by OID, each exactly the content of its OCTET STRING (jsrsasign's own lookup reads a TLV at
 * the value's start, unbounded by the OCTET STRING, and maps names to OIDs on every call, which costs more than the
 * rest of the parse). A value that is not one well-formed TLV is refused.
 */
function extensionValues(hex: string): Map<string, { value: string; critical: boolean }> {
  const result = new Map<string, { value: string; critical: boolean }>();
  const tbs = ASN1HEX.getChildIdx(hex, 0)[0] ?? 0;
  const explicit = ASN1HEX.getChildIdx(hex, tbs).find((i) => hex.substring(i, i + 2) === 'a3');
  if (explicit === undefined) return result;
  for (const ext of ASN1HEX.getChildIdx(hex, ASN1HEX.getChildIdx(hex, explicit)[0] ?? 0)) {
    const parts = ASN1HEX.getChildIdx(hex, ext);
    const [oid, middle, last] = parts;
    const octets = parts.length === 3 ? last : middle;
    if (oid === undefined || octets === undefined || hex.substring(octets, octets + 2) !== '04') {
      throw new Error('an extension is malformed');
    }
    const value = ASN1HEX.getV(hex, octets);
    const critical = parts.length === 3 && middle !== undefined && ASN1HEX.getV(hex, middle) !== '00';
    const name = ASN1HEX.hextooidstr(ASN1HEX.getV(hex, oid));
    // RFC 5280 §4.2: an extension appears at most once (a second basicConstraints must not hide the first).
    if (result.has(name)) throw new Error(`the extension ${name} appears twice`);
    result.set(name, { value, critical });
  }
  return result;
}

/**
 * basicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER (0..MAX) OPTIONAL }. Decoded
 * here because jsrsasign refuses an explicitly encoded `cA FALSE`, which some CAs put in device certificates (not DER,
 * but OpenSSL and .NET, hence DPS, accept it); anything else malformed is refused.
 */
function basicConstraints(hex: string): { cA: boolean; pathLen?: number } {
  if (!ASN1HEX.isASN1HEX(hex) || !hex.startsWith('30')) throw new Error('basicConstraints is not a SEQUENCE');
  const result: { cA: boolean; pathLen?: number } = { cA: false };
  for (const idx of ASN1HEX.getChildIdx(hex, 0)) {
    const tag = hex.substring(idx, idx + 2);
    const value = ASN1HEX.getV(hex, idx);
    if (tag === '01' && value.length === 2 && result.pathLen === undefined) result.cA = value !== '00';
    else if (tag === '02' && value.length > 0 && value.length <= 8 && parseInt(value.substring(0, 2), 16) < 0x80) {
      result.pathLen = parseInt(value, 16);
    } else throw new Error('basicConstraints has an unexpected element');
  }
  return result;
}

/** DPS accepts RSA of at least 2048 bits and ECDSA on P-256 or P-384. */
function keyProblem(key: KeyObject): string | undefined {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss':
      return (details.modulusLength ?? 0) >= 2048
        ? undefined
        : `an RSA key of ${details.modulusLength ?? 0} bits (at least 2048 are required)`;
    case 'ec':
      return details.namedCurve === 'prime256v1' || details.namedCurve === 'secp384r1'
        ? undefined
        : `an EC key on ${details.namedCurve ?? 'an unnamed curve'} (P-256 or P-384 are required)`;
    default:
      return `a ${key.asymmetricKeyType ?? 'unknown'} key (RSA or ECDSA P-256/P-384 are required)`;
  }
}

/** Whether extendedKeyUsage, where present, allows TLS client authentication. */
export const allowsClientAuth = (cert: ParsedCertificate): boolean =>
  cert.extendedKeyUsage === undefined || cert.extendedKeyUsage.some((u) => CLIENT_AUTH.includes(u));

/** Upper-case hex SHA-256 of a DER certificate: the same as its `sha256` thumbprint, without parsing it. */
export const sha256Thumbprint = (der: Buffer): string => createHash('sha256').update(der).digest('hex').toUpperCase();

/** A short human name for messages: the CN, else the whole subject. */
export const describe = (cert: ParsedCertificate): string =>
  cert.commonName !== undefined ? `CN=${cert.commonName}` : cert.subject.split('\n').join(', ');

/**
 * X509CertificateInfo (reference/dps-protocol.md §1.5), as DPS shows it in `registrationState.x509` and in an
 * enrollment's certificate `info`: names most specific first, as .NET prints them ("CN=dev, OU=Azure IoT, O=MSFT,
 * C=US" in the SDKs' examples; Node lists the RDNs in certificate order, one per line), and whole-second UTC times
 * ("2017-11-14T12:34:18Z"; a certificate's validity has no fractions).
 */
export function certificateInfo(cert: ParsedCertificate): X509CertificateInfo {
  return {
    subjectName: displayName(cert.subject),
    sha1Thumbprint: cert.sha1,
    sha256Thumbprint: cert.sha256,
    issuerName: displayName(cert.issuer),
    notBeforeUtc: utcSeconds(cert.notBefore),
    notAfterUtc: utcSeconds(cert.notAfter),
    serialNumber: cert.serialNumber,
    version: cert.version,
  };
}

const displayName = (nodeName: string): string => nodeName.split('\n').reverse().join(', ');
const utcSeconds = (date: Date): string => date.toISOString().replace(/\.\d{3}Z$/, 'Z');

/**
 * Parsed certificates by DER (base64), per instance and bounded: a device's leaf is parsed once for its PUT and its
 * polls, a CA once for all its devices. Failures are not cached (they are cheap to redo and must not fill the map).
 */
export class CertificateCache {
  private readonly entries = new Map<string, ParsedCertificate>();

  constructor(private readonly maxEntries = 10_000) {}

  get(derBase64: string, what: string): ParsedCertificate {
    const hit = this.entries.get(derBase64);
    if (hit) return hit;
    const parsed = parseCertificate(Buffer.from(derBase64, 'base64'), what);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(derBase64, parsed);
    return parsed;
  }

  /** A certificate as an operator wrote it (PEM or base64 DER). */
  fromText(text: string, what: string): ParsedCertificate {
    return this.get(certificateDer(text, what).toString('base64'), what);
  }
}
