// Device registration states and operations as the device API returns them (reference/dps-protocol.md §1.4–1.5).

export type RegistrationStatus = 'unassigned' | 'assigning' | 'assigned' | 'failed' | 'disabled';
export type Substatus =
  'initialAssignment' | 'deviceDataMigrated' | 'deviceDataReset' | 'reprovisionedToInitialAssignment';

export interface DeviceRegistrationResult {
  registrationId: string;
  createdDateTimeUtc?: string;
  assignedHub?: string;
  deviceId?: string;
  status: RegistrationStatus;
  substatus?: Substatus;
  errorCode?: number;
  errorMessage?: string;
  lastUpdatedDateTimeUtc?: string;
  etag?: string;
  payload?: unknown;
  symmetricKey?: { enrollmentGroupId?: string };
  /** X509RegistrationResult: signingCertificateInfo is the group's certificate that anchored the device's chain. */
  x509?: {
    enrollmentGroupId?: string;
    certificateInfo?: X509CertificateInfo;
    signingCertificateInfo?: X509CertificateInfo;
  };
  tpm?: { authenticationKey: string };
}

export interface X509CertificateInfo {
  subjectName: string;
  sha1Thumbprint: string;
  sha256Thumbprint: string;
  issuerName: string;
  notBeforeUtc: string;
  notAfterUtc: string;
  serialNumber: string;
  version: number;
}

export interface RegistrationOperationStatus {
  operationId: string;
  status: RegistrationStatus;
  registrationState: DeviceRegistrationResult;
}

export const isTerminal = (status: RegistrationStatus): boolean => status !== 'assigning';
