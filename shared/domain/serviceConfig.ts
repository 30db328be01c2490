// Service configuration: what real DPS keeps in its control plane (ARM) — linked hubs, access policies, defaults.
import type { AllocationPolicy } from './enrollment';
import type { LinkedHub } from './linkedHub';

export const RIGHTS = [
  'ServiceConfig',
  'EnrollmentRead',
  'EnrollmentWrite',
  'RegistrationStatusRead',
  'RegistrationStatusWrite',
  'DeviceConnect',
] as const;
export type Right = (typeof RIGHTS)[number];

export interface AccessPolicy {
  name: string;
  rights: Right[];
  primaryKey: string;
  secondaryKey: string;
}

export interface ServiceSettings {
  /** Applies to enrollments without their own allocationPolicy. DPS's default is hashed; it may not be custom. */
  defaultAllocationPolicy: Exclude<AllocationPolicy, 'custom'>;
}

export interface ServiceConfiguration {
  linkedHubs: LinkedHub[];
  accessPolicies: AccessPolicy[];
  settings: ServiceSettings;
}

export const DEFAULT_SETTINGS: ServiceSettings = { defaultAllocationPolicy: 'hashed' };
