// The client-certificate adapter: the front end's header (configurable), and bad content refused with a 401.
import { HttpRequest } from '@azure/functions';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import { loadConfig } from '../../shared/config';
import { clientCertificate } from '../../shared/http/request';
import { dpsErrorFrom } from '../support/dpsError';

const request = (headers: Record<string, string>) =>
  new HttpRequest({ method: 'PUT', url: 'https://dps.example.com/x', headers });

describe('clientCertificate', () => {
  it('reads X-ARR-ClientCert by default, or the configured header of a gateway', () => {
    expect(clientCertificate(request({ 'X-ARR-ClientCert': 'MIIB' }))).toBe('MIIB');
    expect(clientCertificate(request({}))).toBeUndefined();
    expect(clientCertificate(request({ 'X-ARR-ClientCert': '  ' }))).toBeUndefined();
    expect(clientCertificate(request({ 'X-Client-Cert': 'MIIB', 'X-ARR-ClientCert': 'QUFB' }), 'x-client-cert')).toBe(
      'MIIB',
    );
    const env = { DPS_MASTER_KEY: randomBytes(32).toString('base64'), DPS_ID_SCOPE: 's', AzureWebJobsStorage: 'x' };
    expect(loadConfig(env).clientCertHeader).toBe('x-arr-clientcert');
    expect(loadConfig({ ...env, DPS_CLIENT_CERT_HEADER: 'X-Client-Cert' }).clientCertHeader).toBe('x-client-cert');
    expect(() => loadConfig({ ...env, DPS_CLIENT_CERT_HEADER: 'bad header' })).toThrow(/DPS_CLIENT_CERT_HEADER/);
  });

  it('refuses content that cannot be base64 DER, or is oversized, with a 401 naming the header', () => {
    for (const value of ['not base64!', 'QUJD=', `-----BEGIN CERTIFICATE-----`]) {
      expect(dpsErrorFrom(() => clientCertificate(request({ 'X-ARR-ClientCert': value })))).toMatchObject({
        status: 401,
        errorCode: 401002,
        message: 'The client certificate (x-arr-clientcert header) is not base64 DER.',
      });
    }
    const huge = Buffer.alloc(20_000).toString('base64');
    expect(dpsErrorFrom(() => clientCertificate(request({ 'X-ARR-ClientCert': huge })))).toMatchObject({
      status: 401,
      message: expect.stringMatching(/is larger than 16384 characters/) as unknown,
    });
  });
});
