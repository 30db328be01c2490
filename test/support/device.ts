// The official device SDK as a test client (azure-iot-provisioning-device over HTTPS, symmetric key).
import { createHmac } from 'node:crypto';

import { ProvisioningDeviceClient } from 'azure-iot-provisioning-device';
import type { RegistrationResult } from 'azure-iot-provisioning-device';
import type { ProvisioningPayload } from 'azure-iot-provisioning-device/dist/interfaces';
import { Http } from 'azure-iot-provisioning-device-http';
import { SymmetricKeySecurityClient } from 'azure-iot-security-symmetric-key';

type SecurityClient = Parameters<typeof ProvisioningDeviceClient.create>[3];

export const deriveKey = (groupKey: string, registrationId: string): string =>
  createHmac('sha256', Buffer.from(groupKey, 'base64')).update(registrationId).digest('base64');

export interface RegisteredState extends RegistrationResult {
  substatus?: string;
  createdDateTimeUtc?: string;
  lastUpdatedDateTimeUtc?: string;
  payload?: unknown;
  symmetricKey?: { enrollmentGroupId?: string };
}

export async function registerDevice(
  endpoint: string,
  idScope: string,
  registrationId: string,
  deviceKey: string,
  payload?: ProvisioningPayload,
): Promise<RegisteredState> {
  const transport = new Http();
  transport.setTransportOptions({ pollingInterval: 50 });
  // The SDK packages each bundle their own azure-iot-common, so their types don't line up; the objects do.
  const security = new SymmetricKeySecurityClient(registrationId, deviceKey) as unknown as SecurityClient;
  const client = ProvisioningDeviceClient.create(endpoint, idScope, transport, security);
  if (payload !== undefined) client.setProvisioningPayload(payload);
  return client.register() as Promise<RegistrationResult>;
}
