// X.509 provisioning with the official device SDK (azure-iot-provisioning-device + -http + azure-iot-security-x509)
// over TLS client certificates against the dev host, which forwards the leaf as X-ARR-ClientCert like App Service.
import { createHash } from 'node:crypto';

import { ProvisioningDeviceClient } from 'azure-iot-provisioning-device';
import { Http } from 'azure-iot-provisioning-device-http';
import { X509Security } from 'azure-iot-security-x509';
import { Registry } from 'azure-iothub';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Stack } from '../../dev/stack';
import type { RegisteredState } from '../support/device';
import type { TestCert } from '../../dev/testPki';
import { makeCert, threeLevelChain } from '../../dev/testPki';
import { createSas } from '../../shared/http/sas';
import { expectDpsError, rawRequest } from '../support/rawHttps';
import { serviceCaller } from '../support/service';
import { startTestStack } from '../support/stack';

type SecurityClient = Parameters<typeof ProvisioningDeviceClient.create>[3];

type X509State = Omit<RegisteredState, 'x509'> & {
  assignedHub: string;
  deviceId: string;
  x509?: {
    enrollmentGroupId?: string;
    certificateInfo?: Record<string, unknown>;
    signingCertificateInfo?: Record<string, unknown>;
  };
};

const DAY = 86_400_000;

describe('X.509 provisioning with the official device SDK', () => {
  let stack: Stack;
  const call = serviceCaller(() => stack);
  let ssEc: TestCert;
  let ssRsa: TestCert;
  let byIntermediate: { root: TestCert; intermediate: TestCert; leaf: TestCert };
  let byRoot: { root: TestCert; intermediate: TestCert; leaf: TestCert };

  /** Registers with the leaf (and any chain the device sends in TLS) and its key. */
  function register(leaf: TestCert, chain: TestCert[] = []): Promise<X509State> {
    const registrationId = /CN=(.+)$/.exec(leaf.subject)?.[1] ?? '';
    const transport = new Http();
    transport.setTransportOptions({ pollingInterval: 50 });
    const cert = [leaf, ...chain].map((c) => c.pem).join('\n');
    const security = new X509Security(registrationId, { cert, key: leaf.keyPem }) as unknown as SecurityClient;
    const client = ProvisioningDeviceClient.create(stack.deviceEndpoint, stack.idScope, transport, security);
    return client.register() as Promise<X509State>;
  }

  async function refusal(leaf: TestCert): Promise<{ name: string; message: string }> {
    try {
      await register(leaf);
    } catch (err) {
      // azure-iot-http-base's RestApiClient error: the raw body is `responseBody`.
      const raw = (err as { responseBody?: string }).responseBody ?? '{}';
      const body = JSON.parse(raw) as { message: string; errorCode: number };
      expect(body.errorCode).toBe(401002);
      return { name: (err as Error).name, message: body.message };
    }
    throw new Error('expected the registration to fail');
  }

  const hubDevice = async (state: X509State) => {
    const hub = stack.hubs.find((h) => h.hostName === state.assignedHub);
    if (!hub) throw new Error(`no hub ${state.assignedHub}`);
    const { responseBody } = await Registry.fromConnectionString(hub.connectionString).get(state.deviceId);
    return responseBody;
  };

  beforeAll(async () => {
    [stack, ssEc, ssRsa, byIntermediate, byRoot] = await Promise.all([
      startTestStack(),
      makeCert({ cn: 'x509-ss-ec' }),
      makeCert({ cn: 'x509-ss-rsa', key: 'rsa' }),
      threeLevelChain('x509-grp-int-1', 'ec'),
      threeLevelChain('x509-grp-root-1', 'rsa'),
    ]);
    const put = async (path: string, body: unknown) => {
      const res = await call('PUT', path, body);
      expect(res.status, res.text).toBe(200);
      return res.json as { etag: string; properties: { verificationCode?: string } };
    };
    for (const [id, cert] of [
      ['x509-ss-ec', ssEc.pem],
      ['x509-ss-rsa', ssRsa.der],
    ] as const) {
      await put(`/enrollments/${id}`, {
        registrationId: id,
        attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: cert } } } },
      });
    }
    await put('/enrollmentGroups/by-intermediate', {
      enrollmentGroupId: 'by-intermediate',
      attestation: {
        type: 'x509',
        x509: { signingCertificates: { primary: { certificate: byIntermediate.intermediate.pem } } },
      },
    });
    // (b): a verified root, referenced by name; the intermediate uploaded (unverified) only to build chains through.
    await put('/certificates/rsa-root', { properties: { certificate: byRoot.root.pem } });
    const code = (await call('POST', '/certificates/rsa-root/generateVerificationCode')).json as {
      properties: { verificationCode: string };
    };
    const proof = await makeCert({ cn: code.properties.verificationCode, issuer: byRoot.root });
    expect((await call('POST', '/certificates/rsa-root/verify', { certificate: proof.pem })).status).toBe(200);
    await put('/certificates/rsa-intermediate', { properties: { certificate: byRoot.intermediate.der } });
    await put('/enrollmentGroups/by-root', {
      enrollmentGroupId: 'by-root',
      attestation: { type: 'x509', x509: { caReferences: { primary: 'rsa-root' } } },
    });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
  });

  it('a self-signed ECC device via its individual enrollment; the hub device is selfSigned with its thumbprints', async () => {
    const state = await register(ssEc);
    expect(state).toMatchObject({ status: 'assigned', deviceId: 'x509-ss-ec', substatus: 'initialAssignment' });
    const info = state.x509?.certificateInfo;
    expect(info).toMatchObject({ subjectName: 'CN=x509-ss-ec', issuerName: 'CN=x509-ss-ec', version: 3 });
    expect(state.x509).not.toHaveProperty('enrollmentGroupId');
    const device = await hubDevice(state);
    expect(device.authentication).toMatchObject({
      type: 'selfSigned',
      x509Thumbprint: { primaryThumbprint: info?.sha256Thumbprint, secondaryThumbprint: info?.sha1Thumbprint },
    });
  });

  it('a self-signed RSA device (enrolled as base64 DER), and it registers again', async () => {
    const first = await register(ssRsa);
    expect(first).toMatchObject({ status: 'assigned', deviceId: 'x509-ss-rsa' });
    const again = await register(ssRsa);
    expect(again).toMatchObject({ status: 'assigned', deviceId: 'x509-ss-rsa', assignedHub: first.assignedHub });
  });

  it('(a) an ECC leaf signed by the intermediate a group holds as signing certificate; hub: certificateAuthority', async () => {
    const state = await register(byIntermediate.leaf, [byIntermediate.intermediate]);
    expect(state).toMatchObject({
      status: 'assigned',
      deviceId: 'x509-grp-int-1',
      x509: {
        enrollmentGroupId: 'by-intermediate',
        certificateInfo: { issuerName: 'CN=x509-grp-int-1 intermediate' },
        // The group's certificate that anchored the chain (X509RegistrationResult.signingCertificateInfo).
        signingCertificateInfo: {
          subjectName: 'CN=x509-grp-int-1 intermediate',
          sha256Thumbprint: createHash('sha256')
            .update(Buffer.from(byIntermediate.intermediate.der, 'base64'))
            .digest('hex')
            .toUpperCase(),
        },
      },
    });
    expect((await hubDevice(state)).authentication).toMatchObject({ type: 'certificateAuthority' });
    expect((await register(byIntermediate.leaf)).status).toBe('assigned');
  });

  it('(b) an RSA leaf whose chain reaches a verified root through an uploaded intermediate', async () => {
    const state = await register(byRoot.leaf);
    expect(state).toMatchObject({
      status: 'assigned',
      x509: { enrollmentGroupId: 'by-root', signingCertificateInfo: { subjectName: 'CN=x509-grp-root-1 root' } },
    });
    expect((await hubDevice(state)).authentication).toMatchObject({ type: 'certificateAuthority' });
  });

  it('a failing check is a 401 whose message names it', async () => {
    const expired = await makeCert({
      cn: 'x509-expired',
      issuer: byIntermediate.intermediate,
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    expect(await refusal(expired)).toMatchObject({
      name: 'UnauthorizedError',
      message: expect.stringMatching(/^The device certificate CN=x509-expired expired at/) as unknown,
    });
    const stranger = await makeCert({ cn: 'x509-stranger', issuer: (await threeLevelChain('other')).intermediate });
    expect((await refusal(stranger)).message).toMatch(/^The certificate chain is not anchored/);
    const impostor = await makeCert({ cn: 'x509-ss-ec' });
    // Refused as an ID without an individual enrollment would be: the answer does not tell that it has one.
    expect((await refusal(impostor)).message).toMatch(/^The certificate chain is not anchored/);
  });

  it('a SAS (no certificate) for an X.509-enrolled ID is refused exactly as for an unknown ID', async () => {
    const key = Buffer.alloc(32, 9).toString('base64');
    const answers = async (id: string) => {
      const base = `/${stack.idScope}/registrations/${id}`;
      const headers = {
        Authorization: createSas(`${stack.idScope}/registrations/${id}`, key, Math.floor(Date.now() / 1000) + 600),
        'Content-Type': 'application/json',
      };
      const calls = [
        rawRequest(stack.deviceEndpoint, 'PUT', `${base}/register`, '{}', headers),
        rawRequest(stack.deviceEndpoint, 'POST', base, '{}', headers),
        rawRequest(stack.deviceEndpoint, 'GET', `${base}/operations/1.abc`, undefined, headers),
      ];
      return (await Promise.all(calls)).map((r) => [r.status, (r.json as { message?: string }).message]);
    };
    const unknown = await answers('x509-nobody');
    expect(unknown).toEqual(Array.from({ length: 3 }, () => [401, 'Unauthorized']));
    expect(await answers('x509-ss-ec')).toEqual(unknown);
  });

  it('polls and status lookups are authenticated by the certificate on every request', async () => {
    const path = `/${stack.idScope}/registrations/x509-ss-ec`;
    const as = (cert?: TestCert) => (cert ? { cert: cert.pem, key: cert.keyPem } : undefined);
    const json = { 'Content-Type': 'application/json' };
    const put = await rawRequest(stack.deviceEndpoint, 'PUT', `${path}/register`, '{}', json, as(ssEc));
    expect(put.status, put.text).toBe(202);
    const { operationId } = put.json as { operationId: string };
    const poll = (cert?: TestCert) =>
      rawRequest(stack.deviceEndpoint, 'GET', `${path}/operations/${operationId}`, undefined, {}, as(cert));
    expect((await poll(ssEc)).status).toBe(200);
    const impostor = await makeCert({ cn: 'x509-ss-ec' });
    expectDpsError(await poll(impostor), 401, /^The certificate chain is not anchored/);
    expectDpsError(await poll(), 401, /No credential was presented/);
    const lookup = (cert?: TestCert) => rawRequest(stack.deviceEndpoint, 'POST', path, '{}', json, as(cert));
    expect((await lookup(ssEc)).status).toBe(200);
    expectDpsError(await lookup(impostor), 401, /^The certificate chain is not anchored/);
    // A client cannot supply the header itself: the front end (here the dev host) replaces it.
    const spoofed = await rawRequest(stack.deviceEndpoint, 'GET', `${path}/operations/${operationId}`, undefined, {
      'X-ARR-ClientCert': ssEc.der,
    });
    expectDpsError(spoofed, 401, /No credential was presented/);
  });
});
