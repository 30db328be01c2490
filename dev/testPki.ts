// A test PKI made on the fly for tests and the benchmark (no private key is ever committed): roots, intermediates and
// device leaves with the key types, extensions and validity periods asked for, signed with WebCrypto (@peculiar/x509).
import 'reflect-metadata'; // @peculiar/x509's DI container needs it loaded first
import { webcrypto } from 'node:crypto';

import * as x509 from '@peculiar/x509';

type KeyPair = webcrypto.CryptoKeyPair;

export type KeyKind = 'rsa' | 'ec' | 'ec384' | 'rsa1024' | 'ec521';

export interface TestCert {
  /** PEM of the certificate. */
  pem: string;
  /** Base64 DER, as X-ARR-ClientCert carries it. */
  der: string;
  /** PKCS#8 PEM of the private key (what X509Security and TLS take). */
  keyPem: string;
  keys: KeyPair;
  cert: x509.X509Certificate;
  kind: KeyKind;
  subject: string;
}

export interface CertOptions {
  cn: string;
  /** Signed by this certificate's key; self-signed when absent. */
  issuer?: TestCert;
  key?: KeyKind;
  /** A CA: basicConstraints CA:TRUE (with pathLength when given) and keyUsage keyCertSign, cRLSign. */
  ca?: boolean;
  pathLength?: number;
  /** Overrides the keyUsage extension (KeyUsageFlags); null leaves it out. */
  keyUsage?: number | null;
  /** extendedKeyUsage OIDs; default clientAuth for leaves, none for CAs; null leaves it out. */
  eku?: string[] | null;
  /** Leave basicConstraints out entirely. */
  noBasicConstraints?: boolean;
  notBefore?: Date;
  notAfter?: Date;
  /** Extra subject RDNs, e.g. 'O=Contoso'. */
  subjectPrefix?: string;
  /** Sign with these keys instead of the issuer's (a forged signature). */
  signingKeys?: KeyPair;
  /** Reuse a key pair (a re-issued or cross-signed CA). */
  keys?: KeyPair;
  /** Extra extensions. */
  extensions?: x509.Extension[];
}

export const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
export const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const DAY = 86_400_000;

function algorithm(kind: KeyKind): webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams {
  switch (kind) {
    case 'rsa':
    case 'rsa1024':
      return {
        name: 'RSASSA-PKCS1-v1_5',
        hash: 'SHA-256',
        publicExponent: new Uint8Array([1, 0, 1]),
        modulusLength: kind === 'rsa' ? 2048 : 1024,
      };
    case 'ec':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ec384':
      return { name: 'ECDSA', namedCurve: 'P-384' };
    case 'ec521':
      return { name: 'ECDSA', namedCurve: 'P-521' };
  }
}

const signing = (kind: KeyKind) =>
  kind.startsWith('ec') ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5' };

export async function makeCert(options: CertOptions): Promise<TestCert> {
  const kind = options.key ?? 'ec';
  const keys = options.keys ?? (await webcrypto.subtle.generateKey(algorithm(kind), true, ['sign', 'verify']));
  const subject = `${options.subjectPrefix ? `${options.subjectPrefix}, ` : ''}CN=${options.cn}`;
  const extensions: x509.Extension[] = [];
  if (!options.noBasicConstraints) {
    extensions.push(new x509.BasicConstraintsExtension(options.ca === true, options.pathLength, true));
  }
  const keyUsage =
    options.keyUsage !== undefined
      ? options.keyUsage
      : options.ca
        ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign
        : x509.KeyUsageFlags.digitalSignature;
  if (keyUsage !== null) extensions.push(new x509.KeyUsagesExtension(keyUsage, true));
  const eku = options.eku !== undefined ? options.eku : options.ca ? null : [CLIENT_AUTH];
  if (eku !== null) extensions.push(new x509.ExtendedKeyUsageExtension(eku));
  extensions.push(...(options.extensions ?? []));
  const issuer = options.issuer;
  const signer = options.signingKeys ?? issuer?.keys ?? keys;
  const cert = await x509.X509CertificateGenerator.create({
    subject,
    issuer: issuer?.subject ?? subject,
    notBefore: options.notBefore ?? new Date(Date.now() - DAY),
    notAfter: options.notAfter ?? new Date(Date.now() + 30 * DAY),
    publicKey: keys.publicKey,
    signingKey: signer.privateKey,
    signingAlgorithm: signing(issuer?.kind ?? kind),
    extensions,
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  return {
    pem: cert.toString('pem'),
    der: Buffer.from(cert.rawData).toString('base64'),
    keyPem: `-----BEGIN PRIVATE KEY-----\n${(pkcs8.match(/.{1,64}/g) ?? []).join('\n')}\n-----END PRIVATE KEY-----\n`,
    keys,
    cert,
    kind,
    subject,
  };
}

/** root ← intermediate ← leaf, the usual three-level device chain. */
export async function threeLevelChain(
  leafCn: string,
  key: KeyKind = 'ec',
): Promise<{ root: TestCert; intermediate: TestCert; leaf: TestCert }> {
  const root = await makeCert({ cn: `${leafCn} root`, ca: true, key });
  const intermediate = await makeCert({ cn: `${leafCn} intermediate`, ca: true, issuer: root, key });
  const leaf = await makeCert({ cn: leafCn, issuer: intermediate, key });
  return { root, intermediate, leaf };
}

/** @peculiar/x509 itself, for tests that build extensions (import it from here: it needs reflect-metadata first). */
export { x509 };
