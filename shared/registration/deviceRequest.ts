// The device request context: what the state machine needs from an HTTP request, validated once.
import type { HttpRequest } from '@azure/functions';

import { assertRegistrationId } from '../domain/registrationId';
import { badRequest } from '../errors';
import { clientCertificate, isPlainObject, MAX_BODY_BYTES, readJson } from '../http/request';
import type { SasToken } from '../http/sas';
import { parseSas } from '../http/sas';

/** The TPM fields of a `DeviceRegistration` body (reference/dps-protocol.md §2.4), base64 TPM2B_PUBLIC each. */
export interface TpmBody {
  endorsementKey: string;
  storageRootKey?: string;
}

export interface DeviceRequest {
  idScope: string;
  registrationId: string;
  /** The `Authorization` SAS token (symmetric key, or TPM after its challenge), parsed once; null when absent. */
  sasToken: SasToken | null;
  /** The device's TLS client certificate as the front end forwards it (base64 DER leaf), if any. */
  clientCertificate?: string;
  /** TPM endorsement and storage root keys, sent by TPM devices in the register body. */
  tpm?: TpmBody;
  /** The device's custom data (`DeviceRegistration.payload`), any JSON. */
  payload?: unknown;
  /** Sent by some SDKs on request; undocumented semantics, accepted and ignored. */
  forceRegistration: boolean;
}

/** Builds the context from route parameters, headers and the `DeviceRegistration` body (which may be empty). */
export async function deviceRequest(request: HttpRequest, clientCertHeader?: string): Promise<DeviceRequest> {
  const registrationId = assertRegistrationId(request.params.registrationId ?? '');
  const body = await readJson(request, MAX_BODY_BYTES, true);
  if (body !== undefined && !isPlainObject(body)) throw badRequest('The request body must be a JSON object.', 1);
  const bodyId = body?.registrationId;
  if (bodyId !== undefined && (typeof bodyId !== 'string' || bodyId.toLowerCase() !== registrationId.toLowerCase())) {
    throw badRequest('The registrationId in the body does not match the registrationId in the path.', 3);
  }
  // Certificate issuance (2025-07-01-preview `csr`, the older preview's `clientCertificateCsr`) needs Azure Device
  // Registry: refused plainly, not ignored (the device would wait for an issuedCertificateChain that never comes).
  for (const field of ['csr', 'clientCertificateCsr']) {
    if (body?.[field] !== undefined && body[field] !== null) {
      throw badRequest(`Certificate issuance ('${field}') is not supported by this service: register without it.`);
    }
  }
  const cert = clientCertificate(request, clientCertHeader);
  const authorization = request.headers.get('authorization');
  const tpm = tpmBody(body?.tpm);
  return {
    idScope: request.params.idScope ?? '',
    registrationId,
    sasToken: authorization === null ? null : parseSas(authorization),
    ...(cert !== undefined ? { clientCertificate: cert } : {}),
    ...(tpm ? { tpm } : {}),
    ...(body?.payload !== undefined ? { payload: body.payload } : {}),
    forceRegistration: request.query.get('forceRegistration')?.toLowerCase() === 'true',
  };
}

function tpmBody(value: unknown): TpmBody | undefined {
  if (value === undefined || value === null) return undefined;
  const ek = isPlainObject(value) ? value.endorsementKey : undefined;
  const srk = isPlainObject(value) ? value.storageRootKey : undefined;
  if (typeof ek !== 'string' || ek === '' || (srk !== undefined && typeof srk !== 'string')) {
    throw badRequest('tpm must be an object with a base64 endorsementKey (and optional storageRootKey).', 1);
  }
  return { endorsementKey: ek, ...(typeof srk === 'string' ? { storageRootKey: srk } : {}) };
}
