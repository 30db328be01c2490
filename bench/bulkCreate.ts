// Service API scenario: one bulk create of many individual enrollments (POST /enrollments, mode `create`, as the
// service SDK's runBulkEnrollmentOperation sends it; reference/official-clients.md §4), measured as enrollments/s.
// Keys are left out, so the service generates them as DPS does.
import type { AzuriteProcess } from './azuriteProcess';
import type { DeviceClient } from './driver';
import type { HostProcess } from './hostControl';
import { measureWindow } from './measure';
import { log } from './progress';

const API_VERSION = '2021-10-01';

export interface BulkCreateResult {
  enrollments: number;
  /** Items the service reported as failed (or all of them when the request itself failed). */
  failed: number;
  status: number;
  wallMs: number;
  enrollmentsPerSecond: number;
  requestBytes: number;
  tableRequestsPerEnrollment: number;
  hostRssPeakMb: number;
  hostCpuMsPerEnrollment: number;
  hostLoopDelayMaxMs: number;
  errors: string[];
}

export async function measureBulkCreate(
  client: DeviceClient,
  host: HostProcess,
  azurite: AzuriteProcess,
  serviceToken: string,
  count: number,
): Promise<BulkCreateResult> {
  const enrollments = Array.from({ length: count }, (_, i) => ({
    registrationId: `bench-bulk-${i}`,
    attestation: { type: 'symmetricKey' },
  }));
  const body = JSON.stringify({ mode: 'create', enrollments });
  log(`service API bulk create: ${count} enrollments in one request (${(body.length / 1024).toFixed(0)} KB)…`);
  const { value: response, window } = await measureWindow(host, azurite, () =>
    client.send('POST', `/enrollments?api-version=${API_VERSION}`, body, { authorization: serviceToken }),
  );
  const result = response.json as { isSuccessful?: unknown; errors?: unknown; message?: unknown } | undefined;
  const itemErrors = Array.isArray(result?.errors) ? result.errors : [];
  const requestFailed = response.status !== 200 || typeof result?.isSuccessful !== 'boolean';
  const failed = requestFailed ? count : itemErrors.length;
  const per = (n: number) => n / count;
  const outcome: BulkCreateResult = {
    enrollments: count,
    failed,
    status: response.status,
    wallMs: response.ms,
    enrollmentsPerSecond: requestFailed ? 0 : ((count - failed) * 1000) / response.ms,
    requestBytes: Buffer.byteLength(body),
    tableRequestsPerEnrollment: per(window.tableRequests),
    hostRssPeakMb: window.hostRssPeakMb,
    hostCpuMsPerEnrollment: per(window.hostCpuMs),
    hostLoopDelayMaxMs: window.hostLoopDelayMs.max,
    errors: requestFailed
      ? [`HTTP ${response.status}: ${typeof result?.message === 'string' ? result.message : 'no bulk result'}`]
      : itemErrors.slice(0, 5).map((e) => JSON.stringify(e)),
  };
  log(
    `service API bulk create: ${outcome.enrollmentsPerSecond.toFixed(0)} enrollments/s ` +
      `(${(outcome.wallMs / 1000).toFixed(1)} s), ${failed} failed`,
  );
  return outcome;
}
