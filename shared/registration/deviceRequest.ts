// The device request context: what the state machine needs from an HTTP request, validated once.
import type { HttpRequest } from '@azure/functions';

import { assertRegistrationId } from '../domain/registrationId';
import { badRequest } from '../errors';
import { clientCertificate, isPlainObject, readJson } from '../http/request';

export interface DeviceRequest {
  idScope: string;
  registrationId: string;
  authorization: string | null;
  clientCertificate?: string;
  /** The device's custom data (`DeviceRegistration.payload`), any JSON. */
  payload?: unknown;
  /** Sent by some SDKs on request; undocumented semantics, accepted and ignored. */
  forceRegistration: boolean;
}

/** Builds the context from route parameters, headers and the `DeviceRegistration` body (which may be empty). */
export async function deviceRequest(request: HttpRequest): Promise<DeviceRequest> {
  const registrationId = assertRegistrationId(request.params.registrationId ?? '');
  const body = await readJson(request);
  if (body !== undefined && !isPlainObject(body)) throw badRequest('The request body must be a JSON object.', 1);
  const bodyId = body?.registrationId;
  if (bodyId !== undefined && (typeof bodyId !== 'string' || bodyId.toLowerCase() !== registrationId.toLowerCase())) {
    throw badRequest('The registrationId in the body does not match the registrationId in the path.', 3);
  }
  const cert = clientCertificate(request);
  return {
    idScope: request.params.idScope ?? '',
    registrationId,
    authorization: request.headers.get('authorization'),
    ...(cert !== undefined ? { clientCertificate: cert } : {}),
    ...(body?.payload !== undefined ? { payload: body.payload } : {}),
    forceRegistration: request.query.get('forceRegistration')?.toLowerCase() === 'true',
  };
}
