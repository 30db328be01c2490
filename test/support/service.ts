// Raw service-API calls signed with the stack's root policy, for what the official service SDK cannot send.
import { randomBytes } from 'node:crypto';

import type { AttestationMechanism } from 'azure-iot-provisioning-service/dist/interfaces';

import type { Stack } from '../../dev/stack';
import { createSas } from '../../shared/http/sas';
import type { RawResponse } from './rawHttps';
import { rawRequest } from './rawHttps';

export type ServiceCall = (
  method: string,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
) => Promise<RawResponse>;

/** `body` goes out as JSON unless it is a string already (e.g. deliberately malformed JSON). */
export function serviceCaller(stack: () => Stack): ServiceCall {
  return (method, path, body, headers = {}) => {
    const { deviceEndpoint, settings } = stack();
    const expiry = Math.floor(Date.now() / 1000) + 3600;
    const owner = createSas(deviceEndpoint, settings.DPS_SERVICE_OWNER_KEY ?? '', expiry, 'provisioningserviceowner');
    return rawRequest(
      deviceEndpoint,
      method,
      `${path}?api-version=2021-10-01`,
      body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      { Authorization: owner, 'Content-Type': 'application/json', ...headers },
    );
  };
}

/** A fresh symmetric key as DPS generates them (64 random bytes, base64). */
export const newKey = (): string => randomBytes(64).toString('base64');

/**
 * A symmetric-key attestation for the official service SDK. Its types demand both keys; the service generates the
 * missing ones, which is what some tests exercise.
 */
export const symmetric = (primaryKey?: string, secondaryKey?: string): AttestationMechanism =>
  ({
    type: 'symmetricKey',
    symmetricKey: { ...(primaryKey ? { primaryKey } : {}), ...(secondaryKey ? { secondaryKey } : {}) },
  }) as unknown as AttestationMechanism;
