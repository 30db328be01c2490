// The sweep's question for a management change whose instance died between announcing and sending its events: did
// the change commit? Each event is checked against the object it describes as it is now.
import type { EnrollmentGroup, IndividualEnrollment } from '../domain/enrollment';
import type { DeviceRepository } from '../storage/devices';
import type { EnrollmentTable } from '../storage/enrollmentTable';
import type { ServiceConfigStore } from '../storage/serviceConfig';
import type { CloudEvent } from './catalogue';

export interface ConfirmPorts {
  enrollments: Pick<EnrollmentTable<IndividualEnrollment>, 'get'>;
  groups: Pick<EnrollmentTable<EnrollmentGroup>, 'get'>;
  devices: Pick<DeviceRepository, 'getRegistration'>;
  configuration: Pick<ServiceConfigStore, 'load'>;
  /** The client-facing ETag of a row ETag. */
  etagOf: (rowEtag: string) => string;
}

/** The events whose change is visible now (with the ETag it got); a change that never happened yields nothing. */
export function confirmer(ports: ConfirmPorts): (events: readonly CloudEvent[]) => Promise<CloudEvent[]> {
  return async (events) => {
    const confirmed: CloudEvent[] = [];
    for (const e of events) {
      const result = await confirmOne(ports, e);
      if (result) confirmed.push(result);
    }
    return confirmed;
  };
}

async function confirmOne(ports: ConfirmPorts, e: CloudEvent): Promise<CloudEvent | undefined> {
  const [, kind = '', change = ''] = e.type.split('.');
  const yes = (holds: boolean) => (holds ? e : undefined);
  switch (kind) {
    case 'enrollment':
    case 'enrollmentGroup': {
      const table = kind === 'enrollment' ? ports.enrollments : ports.groups;
      const current = await table.get(e.subject);
      if (change === 'deleted') return yes(!current);
      // The change wrote this lastUpdatedDateTimeUtc; a later change would have another (its own event says so).
      if (!current || current.value.lastUpdatedDateTimeUtc !== e.data.lastUpdatedDateTimeUtc) return undefined;
      return { ...e, data: { ...e.data, etag: ports.etagOf(current.etag) } };
    }
    case 'registrationState':
      return yes(!(await ports.devices.getRegistration(e.subject)));
    case 'linkedHub':
    case 'accessPolicy':
    case 'settings': {
      const config = await ports.configuration.load();
      const name = e.subject.toLowerCase();
      if (kind === 'settings') return yes(config.settings.defaultAllocationPolicy === e.data.defaultAllocationPolicy);
      const exists =
        kind === 'linkedHub'
          ? config.linkedHubs.some((h) => h.hostName.toLowerCase() === name)
          : config.accessPolicies.some((p) => p.name.toLowerCase() === name);
      return yes(change === 'deleted' ? !exists : exists);
    }
    default:
      return e;
  }
}
