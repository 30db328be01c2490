// Enrollment shapes as the DPS service API defines them (spec 2021-10-01, reference/dps-protocol.md §3.4).

export type ProvisioningStatus = 'enabled' | 'disabled';
export type AllocationPolicy = 'hashed' | 'geoLatency' | 'static' | 'custom';

export interface CustomAllocationDefinition {
  webhookUrl: string;
  apiVersion: string;
  /** Open DPS extension: the policy used when the webhook fails (DPS fails the registration). */
  fallbackAllocationPolicy?: Exclude<AllocationPolicy, 'custom'>;
}

export interface TwinCollection {
  [key: string]: unknown;
}

export interface InitialTwin {
  tags?: TwinCollection;
  properties?: { desired?: TwinCollection };
}

export interface SymmetricKeyAttestation {
  primaryKey?: string;
  secondaryKey?: string;
}

export interface AttestationMechanism {
  type: 'none' | 'tpm' | 'x509' | 'symmetricKey';
  symmetricKey?: SymmetricKeyAttestation;
  tpm?: { endorsementKey: string; storageRootKey?: string };
  x509?: Record<string, unknown>;
}

export interface ReprovisionPolicy {
  updateHubAssignment: boolean;
  migrateDeviceData: boolean;
}

/** What individual enrollments and groups share. */
export interface EnrollmentCommon {
  attestation: AttestationMechanism;
  capabilities?: { iotEdge: boolean };
  iotHubHostName?: string;
  initialTwin?: InitialTwin;
  provisioningStatus?: ProvisioningStatus;
  reprovisionPolicy?: ReprovisionPolicy;
  allocationPolicy?: AllocationPolicy;
  iotHubs?: string[];
  customAllocationDefinition?: CustomAllocationDefinition;
  createdDateTimeUtc?: string;
  lastUpdatedDateTimeUtc?: string;
  etag?: string;
}

export interface IndividualEnrollment extends EnrollmentCommon {
  registrationId: string;
  deviceId?: string;
  optionalDeviceInformation?: TwinCollection;
}

export interface EnrollmentGroup extends EnrollmentCommon {
  enrollmentGroupId: string;
}

export const isEnabled = (e: EnrollmentCommon): boolean => e.provisioningStatus !== 'disabled';

/** The symmetric keys of an attestation, primary first, skipping absent ones. */
export function symmetricKeys(attestation: AttestationMechanism): string[] {
  const keys = attestation.symmetricKey;
  if (attestation.type !== 'symmetricKey' || !keys) return [];
  return [keys.primaryKey, keys.secondaryKey].filter((k): k is string => typeof k === 'string' && k !== '');
}
