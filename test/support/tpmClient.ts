// The official Node TPM client (azure-iot-security-tpm over tss.js) on a swtpm, through the MS-simulator adapter,
// with promise wrappers bounded in time: a failed activation makes tss.js throw inside a callback and never answer.
import { TpmSecurityClient } from 'azure-iot-security-tpm';
import { Tpm } from 'tss.js';

import type { MssimAdapter } from './mssimAdapter';
import { startMssimAdapter } from './mssimAdapter';
import type { SoftwareTpm } from './swtpm';

export interface OfficialTpmClient {
  readonly client: TpmSecurityClient;
  endorsementKey(): Promise<Buffer>;
  registrationId(): Promise<string>;
  activate(blobBase64: string): Promise<void>;
  sign(data: Buffer): Promise<Buffer>;
  stop(): Promise<void>;
}

/** The TPM must be provisioned (or left empty for the client to create EK/SRK) before: tools cannot share swtpm. */
export async function startOfficialTpmClient(tpm: SoftwareTpm, registrationId?: string): Promise<OfficialTpmClient> {
  const adapter: MssimAdapter = await startMssimAdapter(tpm.port);
  const client = new TpmSecurityClient(registrationId, new Tpm(true, '127.0.0.1', adapter.port));
  return {
    client,
    endorsementKey: () => bounded<Buffer>((cb) => client.getEndorsementKey(cb)),
    registrationId: () => bounded<string>((cb) => client.getRegistrationId(cb)),
    activate: (blob) => bounded<void>((cb) => client.activateIdentityKey(Buffer.from(blob, 'base64'), (e) => cb(e))),
    sign: (data) => bounded<Buffer>((cb) => client.signWithIdentity(data, cb)),
    stop: () => adapter.stop(),
  };
}

export function bounded<T>(call: (cb: (err: Error | null | undefined, value?: T) => void) => void, ms = 10_000) {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the TPM client did not answer within ${ms} ms`)), ms);
    try {
      call((err, value) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(value as T);
      });
    } catch (error) {
      clearTimeout(timer);
      reject(error instanceof Error ? error : new Error(String(error)));
    }
  });
}
