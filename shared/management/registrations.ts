// Device registration states, as operators see them: get, delete (the device then provisions afresh), and the
// states of a group's devices.
import { assertRegistrationId } from '../domain/registrationId';
import { notFound } from '../errors';
import { registrationStateDeleted } from '../events/catalogue';
import type { EventPorts } from '../events/outbox';
import { recorded } from '../events/outbox';
import type { JsonResult } from '../http/response';
import type { DeviceRepository, StoredRegistration, Versioned } from '../storage/devices';
import { publicEtag, rowEtag } from '../storage/etag';
import type { ServiceAuthorizer } from './auth';
import type { ServiceRequest } from './serviceRequest';

export class RegistrationStateManager {
  constructor(
    private readonly devices: Pick<
      DeviceRepository,
      'getRegistration' | 'deleteRegistration' | 'queryRegistrations' | 'listEvents'
    >,
    private readonly auth: ServiceAuthorizer,
    private readonly events?: EventPorts,
  ) {}

  async get(request: ServiceRequest, registrationId: string): Promise<JsonResult> {
    await this.auth.require(request, 'RegistrationStatusRead');
    const current = await this.devices.getRegistration(assertRegistrationId(registrationId));
    if (!current) throw notFound(`Registration state '${registrationId}' was not found.`);
    return { status: 200, body: view(current) };
  }

  /** The DeviceRegistrationState an individual enrollment's GET carries (its caller is authorized already). */
  async stateOf(registrationId: string): Promise<Record<string, unknown> | undefined> {
    const current = await this.devices.getRegistration(registrationId);
    return current ? view(current) : undefined;
  }

  async delete(request: ServiceRequest, registrationId: string): Promise<JsonResult> {
    await this.auth.require(request, 'RegistrationStatusWrite');
    const etag = request.ifMatch === undefined ? '*' : rowEtag(request.ifMatch);
    const id = assertRegistrationId(registrationId);
    await recorded(
      this.events,
      (o) => [registrationStateDeleted(o, id)],
      async () => {
        if (!(await this.devices.deleteRegistration(id, etag))) {
          throw notFound(`Registration state '${registrationId}' was not found.`);
        }
      },
    );
    return { status: 204 };
  }

  /** GET registrations/{id}/events: the device's recent events, newest first (beyond DPS; see README "Events"). */
  async listEvents(request: ServiceRequest, registrationId: string): Promise<JsonResult> {
    await this.auth.require(request, 'RegistrationStatusRead');
    return { status: 200, body: await this.devices.listEvents(assertRegistrationId(registrationId)) };
  }

  async queryGroup(request: ServiceRequest, enrollmentGroupId: string): Promise<JsonResult> {
    await this.auth.require(request, 'RegistrationStatusRead');
    const groupId = assertRegistrationId(enrollmentGroupId, 'enrollmentGroupId');
    const page = await this.devices.queryRegistrations(groupId, request.pageSize, request.continuationToken);
    return {
      status: 200,
      body: page.items.map(view),
      headers: {
        'x-ms-item-type': 'DeviceRegistration',
        'x-ms-max-item-count': String(request.pageSize),
        ...(page.continuationToken ? { 'x-ms-continuation': page.continuationToken } : {}),
      },
    };
  }
}

/**
 * DeviceRegistrationState: the committed state; `assigning` while an operation is under way. Without a TPM device's
 * `tpm.authenticationKey`: the hub key wrapped for that device, its own (DPS's DeviceRegistrationState has no `tpm`).
 */
function view(record: Versioned<StoredRegistration>): Record<string, unknown> {
  const { state, operation } = record.value;
  const { tpm: _deviceOnly, ...shown } = state;
  return {
    ...shown,
    ...(operation.status === 'assigning' ? { status: 'assigning' } : {}),
    etag: publicEtag(record.etag),
  };
}
