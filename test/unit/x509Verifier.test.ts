// X.509 attestation: matching (individual first, then the group anchoring the chain) and every rejection, by message.
import { beforeAll, describe, expect, it } from 'vitest';

import type { HeldCaCertificate, X509Request } from '../../shared/attestation/x509/verifier';
import { X509Verifier } from '../../shared/attestation/x509/verifier';
import type { EnrollmentGroup, IndividualEnrollment } from '../../shared/domain/enrollment';
import { DpsError } from '../../shared/errors';
import type { TestCert } from '../../dev/testPki';
import { SERVER_AUTH, makeCert, threeLevelChain, x509 } from '../../dev/testPki';

const DAY = 86_400_000;
const now = new Date();

const individual = (registrationId: string, ...certs: TestCert[]): IndividualEnrollment => ({
  registrationId,
  attestation: {
    type: 'x509',
    x509: {
      clientCertificates: {
        primary: { certificate: certs[0]?.pem },
        ...(certs[1] ? { secondary: { certificate: certs[1].der } } : {}),
      },
    },
  },
  provisioningStatus: 'enabled',
});

const signingGroup = (id: string, cert: TestCert, status: 'enabled' | 'disabled' = 'enabled'): EnrollmentGroup => ({
  enrollmentGroupId: id,
  attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: cert.pem } } } },
  provisioningStatus: status,
});

const caGroup = (id: string, caName: string): EnrollmentGroup => ({
  enrollmentGroupId: id,
  attestation: { type: 'x509', x509: { caReferences: { primary: caName } } },
  provisioningStatus: 'enabled',
});

const ca = (name: string, cert: TestCert, isVerified = true): HeldCaCertificate => ({
  name,
  certificate: cert.pem,
  isVerified,
});

function request(leaf: TestCert | string | undefined, overrides: Partial<X509Request> = {}): X509Request {
  const clientCertificate = typeof leaf === 'string' || leaf === undefined ? leaf : leaf.der;
  const cn = typeof leaf === 'object' ? (/CN=([^,]+)$/.exec(leaf.subject)?.[1] ?? '') : 'device';
  return {
    clientCertificate,
    registrationId: cn,
    individual: undefined,
    groups: [],
    caCertificates: [],
    now,
    ...overrides,
  };
}

/** The 401/401002 the verifier throws, for assertions on its message. */
function refusal(verifier: X509Verifier, req: X509Request): string {
  try {
    verifier.verify(req);
  } catch (err) {
    expect(err).toBeInstanceOf(DpsError);
    expect((err as DpsError).status).toBe(401);
    expect((err as DpsError).errorCode).toBe(401002);
    return (err as DpsError).message;
  }
  throw new Error('expected the verifier to refuse');
}

describe('X.509 attestation', () => {
  let chain: { root: TestCert; intermediate: TestCert; leaf: TestCert };
  let selfSigned: TestCert;
  const verifier = new X509Verifier();

  beforeAll(async () => {
    chain = await threeLevelChain('group-dev-1');
    selfSigned = await makeCert({ cn: 'ss-dev-1' });
  });

  it('an individual enrollment holding the leaf matches; the hub knows the device by its thumbprints', async () => {
    const other = await makeCert({ cn: 'ss-dev-1' });
    const match = verifier.verify(request(selfSigned, { individual: individual('ss-dev-1', other, selfSigned) }));
    expect(match.kind).toBe('individual');
    expect(match.hubAuthentication).toEqual({
      type: 'selfSigned',
      primaryThumbprint: match.leaf.sha256,
      secondaryThumbprint: expect.stringMatching(/^[0-9A-F]{64}$/) as unknown,
    });
    expect(match.hubAuthentication).not.toMatchObject({ secondaryThumbprint: match.leaf.sha256 });
    expect(match.certificateInfo).toMatchObject({
      subjectName: 'CN=ss-dev-1',
      issuerName: 'CN=ss-dev-1',
      sha1Thumbprint: expect.stringMatching(/^[0-9A-F]{40}$/) as unknown,
      sha256Thumbprint: match.leaf.sha256,
      serialNumber: expect.stringMatching(/^[0-9A-F]+$/) as unknown,
      version: 3,
    });
    expect(Date.parse(match.certificateInfo.notAfterUtc)).toBeGreaterThan(Date.now());
  });

  it('a disabled individual enrollment is returned even when an enabled group anchors the chain (it blocks)', () => {
    const disabled = { ...individual('group-dev-1', chain.leaf), provisioningStatus: 'disabled' as const };
    const match = verifier.verify(
      request(chain.leaf, { individual: disabled, groups: [signingGroup('g', chain.intermediate)] }),
    );
    expect(match.kind).toBe('individual');
    expect(match.enrollment.provisioningStatus).toBe('disabled');
  });

  it('a group with the intermediate as signing certificate anchors the chain (hub: certificateAuthority)', () => {
    const match = verifier.verify(
      request(chain.leaf, { groups: [signingGroup('by-intermediate', chain.intermediate)] }),
    );
    expect(match.kind).toBe('group');
    expect(match.enrollment).toMatchObject({ enrollmentGroupId: 'by-intermediate' });
    expect(match.chain.map((c) => c.commonName)).toEqual(['group-dev-1', 'group-dev-1 intermediate']);
    expect(match.hubAuthentication).toEqual({ type: 'certificateAuthority' });
    expect(match.certificateInfo.issuerName).toBe('CN=group-dev-1 intermediate');
  });

  it('a group referencing a verified root anchors the chain through an uploaded intermediate', () => {
    const match = verifier.verify(
      request(chain.leaf, {
        groups: [caGroup('by-root', 'root')],
        caCertificates: [ca('root', chain.root), ca('intermediate', chain.intermediate, false)],
      }),
    );
    expect(match.enrollment).toMatchObject({ enrollmentGroupId: 'by-root' });
    expect(match.chain).toHaveLength(3);
  });

  it("the nearest anchor wins: the intermediate's group before the root's", () => {
    const match = verifier.verify(
      request(chain.leaf, {
        groups: [caGroup('by-root', 'root'), signingGroup('by-intermediate', chain.intermediate)],
        caCertificates: [ca('root', chain.root)],
      }),
    );
    expect(match.enrollment).toMatchObject({ enrollmentGroupId: 'by-intermediate' });
  });

  it('works with RSA and P-384 chains', async () => {
    for (const key of ['rsa', 'ec384'] as const) {
      const c = await threeLevelChain(`${key}-dev`, key);
      const match = verifier.verify(
        request(c.leaf, { groups: [signingGroup('g', c.root)], caCertificates: [ca('i', c.intermediate, false)] }),
      );
      expect(match.chain).toHaveLength(3);
    }
  });

  it('an individual enrollment referencing a verified CA takes a leaf whose chain reaches it', async () => {
    const leaf = await makeCert({ cn: 'ref-dev', issuer: chain.intermediate });
    const byRef: IndividualEnrollment = {
      registrationId: 'ref-dev',
      attestation: { type: 'x509', x509: { caReferences: { primary: 'root' } } },
      provisioningStatus: 'enabled',
    };
    const cas = [ca('root', chain.root), ca('i', chain.intermediate, false)];
    const match = verifier.verify(request(leaf, { individual: byRef, caCertificates: cas }));
    expect(match).toMatchObject({ kind: 'individual', hubAuthentication: { type: 'certificateAuthority' } });
    expect(match.chain.map((c) => c.commonName)).toEqual(['ref-dev', 'group-dev-1 intermediate', 'group-dev-1 root']);
    const unverified = [ca('root', chain.root, false), ca('i', chain.intermediate, false)];
    expect(refusal(verifier, request(leaf, { individual: byRef, caCertificates: unverified }))).toBe(
      "The certificate chain is not valid: the CA certificate 'root' is not verified (proof of possession is pending).",
    );
  });

  it('a device certificate with an explicitly encoded basicConstraints cA FALSE is accepted (OpenSSL and .NET do)', async () => {
    const explicitFalse = new x509.Extension('2.5.29.19', true, Buffer.from('3003010100', 'hex'));
    const leaf = await makeCert({ cn: 'explicit-false', noBasicConstraints: true, extensions: [explicitFalse] });
    expect(verifier.verify(request(leaf, { individual: individual('explicit-false', leaf) })).kind).toBe('individual');
  });

  describe('refuses with a 401 naming the check', () => {
    it('no certificate', () => {
      expect(refusal(verifier, request(undefined))).toMatch(/^No client certificate was presented/);
    });

    it('malformed, truncated and oversized certificates', () => {
      expect(refusal(verifier, request(Buffer.from('not a certificate').toString('base64')))).toMatch(
        /The client certificate is not a valid DER X\.509 certificate/,
      );
      const truncated = Buffer.from(chain.leaf.der, 'base64').subarray(0, 200).toString('base64');
      expect(refusal(verifier, request(truncated))).toMatch(/not a valid DER X\.509 certificate/);
      const padded = Buffer.concat([Buffer.from(chain.leaf.der, 'base64'), Buffer.alloc(4)]).toString('base64');
      expect(refusal(verifier, request(padded))).toMatch(/trailing data/);
      expect(refusal(verifier, request(Buffer.alloc(20_000, 0x30).toString('base64')))).toMatch(
        /larger than 12288 bytes/,
      );
    });

    it('a certificate with absurd extensions', async () => {
      const huge = await makeCert({
        cn: 'absurd',
        extensions: Array.from(
          { length: 400 },
          (_, i) => new x509.Extension(`1.2.3.4.${i}`, false, new Uint8Array(40)),
        ),
      });
      expect(refusal(verifier, request(huge))).toMatch(/larger than 12288 bytes/);
    });

    it('extensions that cannot be read', async () => {
      const badKu = new x509.Extension('2.5.29.15', true, Buffer.from('0400', 'hex'));
      const leaf = await makeCert({ cn: 'bad-ku', keyUsage: null, extensions: [badKu] });
      expect(refusal(verifier, request(leaf))).toBe('The client certificate has extensions that cannot be read.');
      const badBc = new x509.Extension('2.5.29.19', true, Buffer.from('3003020101', 'hex').subarray(0, 4));
      const leaf2 = await makeCert({ cn: 'bad-bc', noBasicConstraints: true, extensions: [badBc] });
      expect(refusal(verifier, request(leaf2))).toBe('The client certificate has extensions that cannot be read.');
      // A second basicConstraints (CA:TRUE) after the first must not be read in place of it, nor ignored.
      const twice = [
        new x509.Extension('2.5.29.19', true, Buffer.from('3000', 'hex')),
        new x509.Extension('2.5.29.19', true, Buffer.from('30030101ff', 'hex')),
      ];
      const leaf3 = await makeCert({ cn: 'bc-twice', noBasicConstraints: true, extensions: twice });
      expect(refusal(verifier, request(leaf3))).toBe('The client certificate has extensions that cannot be read.');
    });

    it('an unsupported critical extension, on the leaf or on a CA (RFC 5280 §4.2); unknown non-critical ones pass', async () => {
      const odd = new x509.Extension('1.2.3.4.5', true, new Uint8Array([5, 0]));
      const leaf = await makeCert({ cn: 'crit', extensions: [odd] });
      expect(refusal(verifier, request(leaf, { individual: individual('crit', leaf) }))).toBe(
        'The device certificate CN=crit has a critical extension this service does not support (1.2.3.4.5).',
      );
      const oddCa = await makeCert({ cn: 'crit-ca', ca: true, extensions: [odd] });
      const leaf2 = await makeCert({ cn: 'crit-2', issuer: oddCa });
      expect(refusal(verifier, request(leaf2, { groups: [signingGroup('g', oddCa)] }))).toBe(
        'The certificate chain is not valid: the CA certificate CN=crit-ca has a critical extension this service does not support (1.2.3.4.5).',
      );
      const lax = new x509.Extension('1.2.3.4.6', false, new Uint8Array(8)); // not even DER: never read
      const leaf3 = await makeCert({ cn: 'lax', extensions: [lax] });
      expect(verifier.verify(request(leaf3, { individual: individual('lax', leaf3) })).kind).toBe('individual');
    });

    it('CN ≠ registration ID, and a subject without a CN', async () => {
      const noCn = await makeCert({ cn: 'a', subjectPrefix: 'CN=b' });
      expect(refusal(verifier, request(noCn, { registrationId: 'a' }))).toMatch(/has no single common name \(CN\)/);
      expect(refusal(verifier, request(selfSigned, { registrationId: 'someone-else' }))).toBe(
        "The client certificate's subject CN 'ss-dev-1' does not match the registration ID 'someone-else'.",
      );
    });

    it('expired and not yet valid leaves', async () => {
      const expired = await makeCert({
        cn: 'old',
        notBefore: new Date(Date.now() - 10 * DAY),
        notAfter: new Date(Date.now() - DAY),
      });
      expect(refusal(verifier, request(expired))).toMatch(/^The device certificate CN=old expired at \d{4}-/);
      const future = await makeCert({ cn: 'new', notBefore: new Date(Date.now() + DAY) });
      expect(refusal(verifier, request(future))).toMatch(/^The device certificate CN=new is not valid before/);
    });

    it('weak or unsupported keys', async () => {
      const rsa1024 = await makeCert({ cn: 'weak', key: 'rsa1024' });
      expect(refusal(verifier, request(rsa1024))).toMatch(/has an RSA key of 1024 bits \(at least 2048 are required\)/);
      const p521 = await makeCert({ cn: 'p521', key: 'ec521' });
      expect(refusal(verifier, request(p521))).toMatch(/has an EC key on secp521r1 \(P-256 or P-384 are required\)/);
    });

    it('key usage without digitalSignature, extended key usage without clientAuth', async () => {
      const ku = await makeCert({ cn: 'ku', keyUsage: x509.KeyUsageFlags.keyEncipherment });
      expect(refusal(verifier, request(ku))).toMatch(/CN=ku has a key usage without digitalSignature/);
      const eku = await makeCert({ cn: 'eku', eku: [SERVER_AUTH] });
      expect(refusal(verifier, request(eku))).toMatch(/CN=eku has an extended key usage without clientAuth/);
    });

    it('an individual enrollment that does not hold the leaf, or attests otherwise (it is authoritative)', async () => {
      const other = await makeCert({ cn: 'ss-dev-1' });
      const detail = (req: X509Request) => {
        try {
          verifier.verify(req);
        } catch (err) {
          return (err as DpsError).detail;
        }
        return undefined;
      };
      // The device hears what an ID without an enrollment would hear (no enumeration); the event keeps the reason.
      const held = request(selfSigned, { individual: individual('ss-dev-1', other) });
      expect(refusal(verifier, held)).toBe(refusal(verifier, request(selfSigned)));
      expect(detail(held)).toBe(
        "The client certificate CN=ss-dev-1 is not one of the individual enrollment 'ss-dev-1''s client certificates.",
      );
      const sym: IndividualEnrollment = { registrationId: 'group-dev-1', attestation: { type: 'symmetricKey' } };
      const unanchored = request(chain.leaf, { individual: sym });
      expect(refusal(verifier, unanchored)).toBe(refusal(verifier, request(chain.leaf)));
      expect(detail(unanchored)).toMatch(/uses symmetricKey attestation, not X\.509/);
      // A device that holds a valid group certificate is told that its individual enrollment blocks it.
      expect(
        refusal(verifier, request(chain.leaf, { individual: sym, groups: [signingGroup('g', chain.intermediate)] })),
      ).toMatch(/uses symmetricKey attestation, not X\.509/);
    });

    it('chain not anchored: nothing held issued the leaf', () => {
      expect(refusal(verifier, request(chain.leaf, { groups: [signingGroup('g', selfSigned)] }))).toMatch(
        /^The certificate chain is not anchored: no enrollment group signing certificate or uploaded CA certificate issued CN=group-dev-1 \(its issuer is CN=group-dev-1 intermediate\)/,
      );
    });

    it('chain not anchored: it ends at a CA no group trusts', () => {
      expect(
        refusal(verifier, request(chain.leaf, { caCertificates: [ca('i', chain.intermediate), ca('r', chain.root)] })),
      ).toMatch(/^The certificate chain is not anchored: it ends at CN=group-dev-1 root/);
    });

    it('CA not verified', () => {
      expect(
        refusal(
          verifier,
          request(chain.leaf, {
            groups: [caGroup('by-root', 'root')],
            caCertificates: [ca('root', chain.root, false), ca('i', chain.intermediate)],
          }),
        ),
      ).toMatch(/the CA certificate 'root' is not verified \(proof of possession is pending\)/);
    });

    it('expired intermediate', async () => {
      const root = await makeCert({ cn: 'r', ca: true });
      const old = await makeCert({ cn: 'old-int', ca: true, issuer: root, notAfter: new Date(Date.now() - DAY) });
      const leaf = await makeCert({ cn: 'd', issuer: old });
      expect(refusal(verifier, request(leaf, { groups: [signingGroup('g', old)] }))).toMatch(
        /^The certificate chain is not valid: the CA certificate CN=old-int expired at/,
      );
    });

    it('an issuer that is not a CA, path length exceeded, CA key usage without keyCertSign', async () => {
      const root = await makeCert({ cn: 'r0', ca: true, pathLength: 0 });
      const notCa = await makeCert({ cn: 'not-ca', issuer: root, eku: null });
      const leaf1 = await makeCert({ cn: 'd1', issuer: notCa });
      expect(refusal(verifier, request(leaf1, { groups: [signingGroup('g', notCa)] }))).toMatch(
        /the CA certificate CN=not-ca is not a CA \(basicConstraints CA:TRUE is missing\)/,
      );
      const int = await makeCert({ cn: 'int', ca: true, issuer: root });
      const leaf2 = await makeCert({ cn: 'd2', issuer: int });
      expect(
        refusal(
          verifier,
          request(leaf2, { groups: [signingGroup('g', root)], caCertificates: [ca('int', int, false)] }),
        ),
      ).toMatch(/the CA certificate CN=r0 allows a path length of 0, but 1 intermediate certificates follow it/);
      const noSign = await makeCert({ cn: 'no-sign', ca: true, keyUsage: x509.KeyUsageFlags.cRLSign });
      const leaf3 = await makeCert({ cn: 'd3', issuer: noSign });
      expect(refusal(verifier, request(leaf3, { groups: [signingGroup('g', noSign)] }))).toMatch(
        /CN=no-sign has a key usage without keyCertSign/,
      );
    });

    it('a CA with a weak key, or an extended key usage without clientAuth', async () => {
      const weak = await makeCert({ cn: 'weak-ca', ca: true, key: 'rsa1024' });
      const leaf1 = await makeCert({ cn: 'w1', issuer: weak, key: 'ec' });
      expect(refusal(verifier, request(leaf1, { groups: [signingGroup('g', weak)] }))).toBe(
        'The certificate chain is not valid: the CA certificate CN=weak-ca has an RSA key of 1024 bits (at least 2048 are required).',
      );
      const serverOnly = await makeCert({ cn: 'server-ca', ca: true, eku: [SERVER_AUTH] });
      const leaf2 = await makeCert({ cn: 'w2', issuer: serverOnly });
      expect(refusal(verifier, request(leaf2, { groups: [signingGroup('g', serverOnly)] }))).toBe(
        'The certificate chain is not valid: the CA certificate CN=server-ca has an extended key usage without clientAuth.',
      );
    });

    it("an individual enrollment's certificate that is not a certificate", () => {
      const broken: IndividualEnrollment = {
        registrationId: 'ss-dev-1',
        attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: 'not base64!' } } } },
      };
      expect(refusal(verifier, request(selfSigned, { individual: broken }))).toBe(
        "the individual enrollment 'ss-dev-1''s primary certificate is not a PEM or base64 DER X.509 certificate.",
      );
    });

    it('a signature that does not verify', async () => {
      const impostorKeys = await makeCert({ cn: 'x', ca: true });
      const forged = await makeCert({ cn: 'forged', issuer: chain.intermediate, signingKeys: impostorKeys.keys });
      expect(refusal(verifier, request(forged, { groups: [signingGroup('g', chain.intermediate)] }))).toMatch(
        /the signature of CN=forged does not verify with the key of CN=group-dev-1 intermediate/,
      );
    });

    it('chains that loop terminate', async () => {
      const a0 = await makeCert({ cn: 'loop-a', ca: true });
      const b = await makeCert({ cn: 'loop-b', ca: true, issuer: a0 });
      const a1 = await makeCert({ cn: 'loop-a', ca: true, issuer: b, keys: a0.keys });
      const leaf = await makeCert({ cn: 'looped', issuer: a0 });
      expect(
        refusal(verifier, request(leaf, { caCertificates: [ca('a', a1), ca('b', b)], groups: [caGroup('g', 'none')] })),
      ).toMatch(/^The certificate chain is not anchored: it ends at CN=loop-/);
    });

    it('chains deeper than the bound', async () => {
      let issuer = await makeCert({ cn: 'deep-0', ca: true });
      const root = issuer;
      const held: HeldCaCertificate[] = [];
      for (let i = 1; i <= 9; i++) {
        issuer = await makeCert({ cn: `deep-${i}`, ca: true, issuer });
        held.push(ca(`deep-${i}`, issuer, false));
      }
      const leaf = await makeCert({ cn: 'deep-leaf', issuer });
      expect(refusal(verifier, request(leaf, { groups: [signingGroup('g', root)], caCertificates: held }))).toMatch(
        /the chain is longer than 8 certificates/,
      );
    });

    it('too many candidate issuers', async () => {
      const decoys = await Promise.all(Array.from({ length: 70 }, () => makeCert({ cn: 'same-name', ca: true })));
      const leaf = await makeCert({ cn: 'decoyed', issuer: decoys[0] });
      const held = decoys.slice(1).map((d, i) => ca(`d${i}`, d, false));
      expect(refusal(new X509Verifier(), request(leaf, { caCertificates: held }))).toMatch(
        /more than 64 candidate issuers were tried/,
      );
    });
  });
});
