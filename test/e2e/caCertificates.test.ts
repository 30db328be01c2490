// CA certificate management through the service API (ARM's certificates/{name} shapes): upload, list, get, delete
// with ETags, proof of possession with a verification certificate made here, and caReferences checked at enrollment.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import type { TestCert } from '../../dev/testPki';
import { makeCert, x509 } from '../../dev/testPki';
import { expectDpsError } from '../support/rawHttps';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

interface CertificateResponse {
  name: string;
  etag: string;
  type: string;
  properties: {
    subject: string;
    thumbprint: string;
    isVerified: boolean;
    certificate: string;
    expiry: string;
    verificationCode?: string;
  };
}

const group = (id: string, caName: string) => ({
  enrollmentGroupId: id,
  attestation: { type: 'x509', x509: { caReferences: { primary: caName } } },
});

describe('service API: CA certificates and proof of possession', () => {
  let stack: Stack;
  let root: TestCert;
  const call = serviceCaller(() => stack);

  beforeAll(async () => {
    [stack, root] = await Promise.all([startTestStack(), makeCert({ cn: 'Contoso Root CA', ca: true })]);
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('uploads a root (PEM), proves possession with a certificate for the code, and only then anchors a group', async () => {
    const put = await call('PUT', '/certificates/contoso-root', { properties: { certificate: root.pem } });
    expect(put.status).toBe(200);
    const uploaded = put.json as CertificateResponse;
    expect(uploaded).toMatchObject({
      name: 'contoso-root',
      type: 'Microsoft.Devices/provisioningServices/Certificates',
      properties: { subject: 'CN=Contoso Root CA', isVerified: false, certificate: root.der },
    });
    expect(uploaded.properties.thumbprint).toMatch(/^[0-9A-F]{40}$/);
    expect(put.headers.etag).toBe(`"${uploaded.etag}"`);

    // Not verified yet: a group cannot reference it.
    expectDpsError(
      await call('PUT', '/enrollmentGroups/by-root', group('by-root', 'contoso-root')),
      400,
      /'attestation\.x509\.caReferences\.primary': the CA certificate 'contoso-root' is not verified/,
    );

    const code = await call('POST', '/certificates/contoso-root/generateVerificationCode', undefined, {
      'If-Match': uploaded.etag,
    });
    expect(code.status).toBe(200);
    const { verificationCode } = (code.json as CertificateResponse).properties;
    expect(verificationCode).toMatch(/^[0-9A-F]{48}$/);

    // A certificate for the code signed by another key proves nothing.
    const stranger = await makeCert({ cn: 'stranger', ca: true });
    const forged = await makeCert({ cn: verificationCode ?? '', issuer: root, signingKeys: stranger.keys });
    expectDpsError(
      await call('POST', '/certificates/contoso-root/verify', { certificate: forged.pem }),
      400,
      /is not signed by the key of CN=Contoso Root CA/,
    );
    const wrongCn = await makeCert({ cn: 'not-the-code', issuer: root });
    expectDpsError(
      await call('POST', '/certificates/contoso-root/verify', { certificate: wrongCn.pem }),
      400,
      /has subject CN 'not-the-code', not the verification code/,
    );

    const proof = await makeCert({ cn: verificationCode ?? '', issuer: root });
    const verified = await call('POST', '/certificates/contoso-root/verify', { certificate: proof.der });
    expect(verified.status).toBe(200);
    expect((verified.json as CertificateResponse).properties).toMatchObject({ isVerified: true });
    expect((verified.json as CertificateResponse).properties).not.toHaveProperty('verificationCode');

    expect((await call('PUT', '/enrollmentGroups/by-root', group('by-root', 'contoso-root'))).status).toBe(200);
    const listed = (await call('GET', '/certificates')).json as { value: CertificateResponse[] };
    expect(listed.value.map((c) => [c.name, c.properties.isVerified])).toEqual([['contoso-root', true]]);
  });

  it('re-uploading the same certificate keeps its verification; another certificate starts unverified', async () => {
    const same = await call('PUT', '/certificates/contoso-root', { properties: { certificate: root.der } });
    expect((same.json as CertificateResponse).properties.isVerified).toBe(true);
    const other = await makeCert({ cn: 'Other Root', ca: true });
    const replaced = await call('PUT', '/certificates/contoso-root', { properties: { certificate: other.pem } });
    expect((replaced.json as CertificateResponse).properties).toMatchObject({
      isVerified: false,
      subject: 'CN=Other Root',
    });
  });

  it('ETags: a stale If-Match is 412 for put, generateVerificationCode, verify and delete', async () => {
    const first = (await call('PUT', '/certificates/etagged', { properties: { certificate: root.pem } }))
      .json as CertificateResponse;
    await call('POST', '/certificates/etagged/generateVerificationCode');
    const stale = { 'If-Match': `"${first.etag}"` };
    expectDpsError(await call('PUT', '/certificates/etagged', { properties: { certificate: root.pem } }, stale), 412);
    expectDpsError(await call('POST', '/certificates/etagged/generateVerificationCode', undefined, stale), 412);
    expectDpsError(await call('POST', '/certificates/etagged/verify', { certificate: root.pem }, stale), 412);
    expectDpsError(await call('DELETE', '/certificates/etagged', undefined, stale), 412);
    const current = (await call('GET', '/certificates/etagged')).json as CertificateResponse;
    expect((await call('DELETE', '/certificates/etagged', undefined, { 'If-Match': current.etag })).status).toBe(204);
    expectDpsError(await call('GET', '/certificates/etagged'), 404, /'etagged' was not found/);
  });

  it('refuses what is not a CA certificate, unknown CAs in groups, and calls without ServiceConfig', async () => {
    expectDpsError(
      await call('PUT', '/certificates/junk', { properties: { certificate: 'bm90IGEgY2VydA==' } }),
      400,
      /'properties\.certificate': The certificate is not a valid DER X\.509 certificate/,
    );
    expectDpsError(
      await call('PUT', '/certificates/junk', { properties: { certificate: '-----BEGIN CERTIFICATE-----\n!!\n' } }),
      400,
      /not a PEM or base64 DER/,
    );
    const leaf = await makeCert({ cn: 'a-device' });
    expectDpsError(
      await call('PUT', '/certificates/leaf', { properties: { certificate: leaf.pem } }),
      400,
      /is not a CA certificate \(basicConstraints CA:TRUE is missing\)/,
    );
    expectDpsError(
      await call('PUT', '/certificates/chain', { properties: { certificate: `${root.pem}\n${root.pem}` } }),
      400,
      /holds 2 certificates: give one/,
    );
    const critical = await makeCert({
      cn: 'odd-ca',
      ca: true,
      extensions: [new x509.Extension('1.2.3.4.5', true, new Uint8Array([5, 0]))],
    });
    expectDpsError(
      await call('PUT', '/certificates/odd', { properties: { certificate: critical.pem } }),
      400,
      /critical extension this service does not support \(1\.2\.3\.4\.5\)/,
    );
    expectDpsError(await call('PUT', '/certificates/junk', {}), 400, /'certificate': is required/);
    expectDpsError(await call('PUT', '/certificates/a%2Fb', { properties: { certificate: root.pem } }), 400, /'name'/);
    expectDpsError(
      await call('PUT', '/enrollmentGroups/by-ghost', group('by-ghost', 'ghost')),
      400,
      /no CA certificate named 'ghost' was uploaded/,
    );
    expectDpsError(await call('POST', '/certificates/ghost/generateVerificationCode'), 404);
    expectDpsError(await call('GET', '/certificates', undefined, { Authorization: 'SharedAccessSignature sr=x' }), 401);
  });
});
