// Enrollment management (individual enrollments and groups alike): CRUD with ETags, the attestation mechanism (the
// only read that returns keys), queries, and bulk operations.
import { randomBytes } from 'node:crypto';

import type {
  AttestationMechanism,
  EnrollmentCommon,
  EnrollmentGroup,
  IndividualEnrollment,
} from '../domain/enrollment';
import { parseEnrollmentGroup, parseIndividualEnrollment, invalid, object } from '../domain/validate';
import { redactUrl } from '../allocation/custom';
import { assertRegistrationId } from '../domain/registrationId';
import type { DpsErrorBody } from '../errors';
import { DpsError, badRequest, notFound, preconditionFailed, toHttpResponse } from '../errors';
import type { CloudEvent, EventOrigin } from '../events/catalogue';
import {
  enrollmentChanged,
  enrollmentDeleted,
  enrollmentGroupChanged,
  enrollmentGroupDeleted,
} from '../events/catalogue';
import type { EventPorts } from '../events/outbox';
import { recorded } from '../events/outbox';
import type { JsonResult } from '../http/response';
import type { EnrollmentTable, Versioned } from '../storage/enrollmentTable';
import { rowEtag } from '../storage/etag';
import type { ServiceAuthorizer } from './auth';
import { parseQuery } from './query';
import type { ServiceRequest } from './serviceRequest';

/** Far beyond DPS's 10: one call can carry a factory batch. Bodies are also capped at 16 MB. */
export const BULK_LIMIT = 10_000;
const BULK_CONCURRENCY = 16;
/** Attempts of a write that lost a race with a concurrent one (see `write`). */
const WRITE_ATTEMPTS = 10;
const BULK_MODES = ['create', 'update', 'updateIfMatchETag', 'delete'] as const;
type BulkMode = (typeof BULK_MODES)[number];

export interface EnrollmentKind<T extends EnrollmentCommon> {
  /** `x-ms-item-type` of query results (the C# SDK parses it). */
  itemType: 'Enrollment' | 'EnrollmentGroup';
  idField: 'registrationId' | 'enrollmentGroupId';
  /** The array property of a bulk operation. */
  bulkField: 'enrollments' | 'enrollmentGroups';
  parse(body: unknown, id: string): T;
  idOf(enrollment: T): string;
}

export const individualKind: EnrollmentKind<IndividualEnrollment> = {
  itemType: 'Enrollment',
  idField: 'registrationId',
  bulkField: 'enrollments',
  parse: parseIndividualEnrollment,
  idOf: (e) => e.registrationId,
};

export const groupKind: EnrollmentKind<EnrollmentGroup> = {
  itemType: 'EnrollmentGroup',
  idField: 'enrollmentGroupId',
  bulkField: 'enrollmentGroups',
  parse: parseEnrollmentGroup,
  idOf: (e) => e.enrollmentGroupId,
};

/** Enrollment ETags as DPS shows them: a quoted opaque string. */
export const enrollmentEtag = (row: string) => `"${Buffer.from(row, 'utf8').toString('base64')}"`;

export class EnrollmentManager<T extends EnrollmentCommon> {
  constructor(
    private readonly kind: EnrollmentKind<T>,
    private readonly table: EnrollmentTable<T>,
    private readonly auth: ServiceAuthorizer,
    private readonly clock: () => Date,
    /** Called after every change, so this instance's caches see it at once. */
    private readonly changed: () => void,
    /** Every change is recorded with its event (created, updated or deleted, with the new ETag). */
    private readonly events?: EventPorts,
    /**
     * Checks against other state before a write (X.509 caReferences name verified CAs): one check per request, so
     * what it reads is read once for all the items of a bulk operation.
     */
    private readonly newCheck: () => (enrollment: T) => Promise<void> = () => async () => {},
    /**
     * Individual enrollments: the device's registration state, which DPS's GET carries in the read-only
     * `registrationState` (its query does not: Azure/azure-iot-sdk-csharp#3478).
     */
    private readonly registrationState?: (id: string) => Promise<Record<string, unknown> | undefined>,
  ) {}

  async get(request: ServiceRequest, id: string): Promise<JsonResult> {
    await this.auth.require(request, 'EnrollmentRead');
    const valid = this.validId(id);
    const [current, state] = await Promise.all([this.table.get(valid), this.registrationState?.(valid)]);
    if (!current) throw this.notFound(id);
    return { status: 200, body: { ...this.view(current), ...(state ? { registrationState: state } : {}) } };
  }

  /** PUT: an upsert, or a conditional replace with If-Match. Keys left out are kept (or generated when new). */
  async put(request: ServiceRequest, id: string): Promise<JsonResult> {
    await this.auth.require(request, 'EnrollmentWrite');
    const incoming = this.kind.parse(request.body, id);
    await this.newCheck()(incoming);
    const ifMatch = request.ifMatch === undefined ? undefined : rowEtag(request.ifMatch);
    const saved = await this.write(id, incoming, ifMatch);
    this.changed();
    // As DPS, the answer is the enrollment as written, symmetric keys included (kept or generated): az CLI's
    // `iot dps enrollment update` prints it and its live tests check the key there. GET and query never show keys.
    return { status: 200, body: this.view(saved, true) };
  }

  /**
   * Writes `incoming` over what is stored, carrying over the keys, certificates and creation time it leaves out. The
   * write is conditional on the row that was read, so a concurrent change (a key rotation, say) is never silently
   * undone: on a lost race it reads again and retries, a bounded number of times. A caller's own If-Match (even `*`,
   * a condition on an existing enrollment, as in HTTP) is the condition instead, and is not retried.
   */
  private async write(id: string, incoming: T, ifMatch: string | undefined): Promise<Versioned<T>> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.table.get(id);
      if (ifMatch !== undefined && (!current || (ifMatch !== '*' && current.etag !== ifMatch))) {
        throw preconditionFailed();
      }
      const value = this.complete(incoming, current?.value);
      try {
        const etag = await this.saved(value, current !== undefined, () =>
          current ? this.table.save(value, current.etag) : this.table.create(value),
        );
        return { value, etag };
      } catch (err) {
        // 412: changed since read; 404: deleted since read; 409: created since read.
        const lostRace = err instanceof DpsError && [404, 409, 412].includes(err.status);
        if (!lostRace || (ifMatch !== undefined && ifMatch !== '*') || attempt >= WRITE_ATTEMPTS) {
          if (lostRace) throw preconditionFailed(`${this.kind.itemType} '${id}' kept changing concurrently: retry.`);
          throw err;
        }
      }
    }
  }

  async delete(request: ServiceRequest, id: string): Promise<JsonResult> {
    await this.auth.require(request, 'EnrollmentWrite');
    const ifMatch = request.ifMatch === undefined ? '*' : rowEtag(request.ifMatch);
    await this.deleted(this.validId(id), ifMatch);
    this.changed();
    return { status: 204 };
  }

  /** The attestation mechanism with its keys (what `az … --show-keys` uses); GET and query never return keys. */
  async attestation(request: ServiceRequest, id: string): Promise<JsonResult> {
    await this.auth.require(request, 'EnrollmentRead');
    const current = await this.table.get(this.validId(id));
    if (!current) throw this.notFound(id);
    return { status: 200, body: current.value.attestation };
  }

  async query(request: ServiceRequest): Promise<JsonResult> {
    await this.auth.require(request, 'EnrollmentRead');
    const page = await this.table.query(parseQuery(request.body), request.pageSize, request.continuationToken);
    return {
      status: 200,
      body: page.items.map((e) => this.view(e)),
      headers: {
        'x-ms-item-type': this.kind.itemType,
        'x-ms-max-item-count': String(request.pageSize),
        // Only when more pages exist: the Node SDK sets hasMoreResults from the header's mere presence.
        ...(page.continuationToken ? { 'x-ms-continuation': page.continuationToken } : {}),
      },
    };
  }

  async bulk(request: ServiceRequest): Promise<JsonResult> {
    await this.auth.require(request, 'EnrollmentWrite');
    const body = object(request.body, 'body');
    // Case-insensitive, as DPS parses it: the Node service SDK sends `updateIfMatchEtag`, the REST spec says `…ETag`.
    const mode = BULK_MODES.find((m) => typeof body.mode === 'string' && m.toLowerCase() === body.mode.toLowerCase());
    if (mode === undefined) throw invalid('mode', `must be one of ${BULK_MODES.join(', ')}.`);
    const items = body[this.kind.bulkField];
    if (!Array.isArray(items) || items.length === 0) throw invalid(this.kind.bulkField, 'must be a non-empty array.');
    if (items.length > BULK_LIMIT)
      throw invalid(this.kind.bulkField, `may hold at most ${BULK_LIMIT} items (got ${items.length}).`);

    // Every item must name itself before anything is written, so a malformed batch changes nothing.
    const ids = items.map((item: unknown) => itemId(item, this.kind.idField));
    const errors: Record<string, unknown>[] = [];
    const check = this.newCheck();
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const index = next++;
        const item: unknown = items[index];
        const id = ids[index] ?? '';
        try {
          await this.bulkItem(mode, item, id, check);
        } catch (err) {
          // Every item gets its own result, whatever failed, so the caller knows exactly what was written.
          const { errorCode, message, trackingId } = toHttpResponse(err).jsonBody as DpsErrorBody;
          const errorStatus = errorCode >= 500000 ? `${message} Tracking ID: ${trackingId}.` : message;
          errors.push({ [this.kind.idField]: id, errorCode, errorStatus });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(BULK_CONCURRENCY, items.length) }, worker));
    this.changed();
    return { status: 200, body: { isSuccessful: errors.length === 0, errors } };
  }

  private async bulkItem(
    mode: BulkMode,
    item: unknown,
    id: string,
    check: (enrollment: T) => Promise<void>,
  ): Promise<void> {
    const itemEtag =
      typeof (item as { etag?: unknown }).etag === 'string' ? rowEtag((item as { etag: string }).etag) : undefined;
    if (mode === 'delete') return this.deleted(this.validId(id), itemEtag ?? '*');
    const incoming = this.kind.parse(item, id);
    await check(incoming);
    if (mode === 'create') {
      const created = this.complete(incoming, undefined);
      await this.saved(created, false, () => this.table.create(created));
      return;
    }
    if (mode === 'updateIfMatchETag' && itemEtag === undefined)
      throw invalid('etag', 'is required in updateIfMatchETag mode.');
    // As PUT: an item's ETag is its condition in updateIfMatchETag mode; `update` ignores it, as DPS does.
    await this.write(id, incoming, mode === 'updateIfMatchETag' ? itemEtag : undefined);
  }

  /** A write with its `created`/`updated` event, which carries the new ETag. */
  private saved(enrollment: T, exists: boolean, write: () => Promise<string>): Promise<string> {
    const change = exists ? 'updated' : 'created';
    const build = (o: EventOrigin, etag: string): CloudEvent =>
      this.kind.itemType === 'Enrollment'
        ? enrollmentChanged(o, change, enrollment as unknown as IndividualEnrollment, etag)
        : enrollmentGroupChanged(o, change, enrollment as unknown as EnrollmentGroup, etag);
    return recorded(
      this.events,
      (o) => [build(o, '')],
      write,
      (row, [planned]) => (planned ? [{ ...planned, data: { ...planned.data, etag: enrollmentEtag(row) } }] : []),
    );
  }

  /** A delete with its `deleted` event; 404 when there was nothing to delete (and no event). */
  private async deleted(id: string, etag: string): Promise<void> {
    const event = (o: EventOrigin) =>
      this.kind.itemType === 'Enrollment' ? enrollmentDeleted(o, id) : enrollmentGroupDeleted(o, id);
    await recorded(
      this.events,
      (o) => [event(o)],
      async () => {
        if (!(await this.table.delete(id, etag))) throw this.notFound(id);
      },
    );
  }

  /** Server-side fields: keys and certificates (kept, or keys of 64 random bytes as DPS generates) and timestamps. */
  private complete(incoming: T, current: T | undefined): T {
    const now = this.clock().toISOString();
    return {
      ...incoming,
      attestation: withCertificates(withKeys(incoming.attestation, current?.attestation), current?.attestation),
      ...withWebhookSecret(incoming, current),
      createdDateTimeUtc: current?.createdDateTimeUtc ?? now,
      lastUpdatedDateTimeUtc: now,
    };
  }

  /** What GET and query show: no symmetric keys (a PUT's answer has them), X.509 certificate info only. */
  private view(enrollment: Versioned<T>, withKeys = false): Record<string, unknown> {
    const { attestation, customAllocationDefinition: custom, ...rest } = enrollment.value;
    return {
      ...rest,
      attestation: withKeys && attestation.type === 'symmetricKey' ? attestation : redact(attestation),
      // The webhook URL's query (an Azure Functions key, `?code=`) is masked as DPS masks it: `?****`.
      ...(custom ? { customAllocationDefinition: { ...custom, webhookUrl: redactUrl(custom.webhookUrl) } } : {}),
      etag: enrollmentEtag(enrollment.etag),
    };
  }

  private validId(id: string): string {
    return assertRegistrationId(id, this.kind.idField);
  }

  private notFound(id: string): DpsError {
    return notFound(`${this.kind.itemType} '${id}' was not found.`, 404202);
  }
}

/**
 * A webhook URL sent back as GET shows it (query masked `?****`) keeps the stored URL, key included: a client that
 * reads, edits and writes an enrollment back must not replace its function key with four stars.
 */
function withWebhookSecret<T extends EnrollmentCommon>(incoming: T, current: T | undefined): Partial<T> {
  const sent = incoming.customAllocationDefinition;
  const stored = current?.customAllocationDefinition;
  if (!sent || !stored || !sent.webhookUrl.endsWith('?****')) return {};
  if (sent.webhookUrl !== redactUrl(stored.webhookUrl)) return {};
  return { customAllocationDefinition: { ...sent, webhookUrl: stored.webhookUrl } } as Partial<T>;
}

function withKeys(incoming: AttestationMechanism, current: AttestationMechanism | undefined): AttestationMechanism {
  if (incoming.type !== 'symmetricKey') return incoming;
  const previous = current?.type === 'symmetricKey' ? current.symmetricKey : undefined;
  const generate = () => randomBytes(64).toString('base64');
  return {
    type: 'symmetricKey',
    symmetricKey: {
      primaryKey: incoming.symmetricKey?.primaryKey ?? previous?.primaryKey ?? generate(),
      secondaryKey: incoming.symmetricKey?.secondaryKey ?? previous?.secondaryKey ?? generate(),
    },
  };
}

const CERTIFICATE_PAIRS = ['clientCertificates', 'signingCertificates'] as const;
type CertificateEntry = { certificate?: string; info?: unknown };
type CertificatePair = Partial<Record<'primary' | 'secondary', CertificateEntry>>;

/** Certificate slots sent back as GET shows them (info only, validate.ts) get the stored certificate of that slot. */
function withCertificates(
  incoming: AttestationMechanism,
  current: AttestationMechanism | undefined,
): AttestationMechanism {
  if (incoming.type !== 'x509' || !incoming.x509) return incoming;
  const x509: Record<string, unknown> = { ...incoming.x509 };
  for (const name of CERTIFICATE_PAIRS) {
    const pair = x509[name] as CertificatePair | undefined;
    if (!pair) continue;
    const stored = (current?.type === 'x509' ? current.x509?.[name] : undefined) as CertificatePair | undefined;
    const completed: CertificatePair = {};
    for (const which of ['primary', 'secondary'] as const) {
      const entry = pair[which];
      if (!entry) continue;
      if (entry.certificate) completed[which] = entry;
      else if (stored?.[which]?.certificate) completed[which] = stored[which];
      else {
        throw invalid(
          `attestation.x509.${name}.${which}.certificate`,
          'is required: only its info was sent, and no certificate is stored for this slot to keep.',
        );
      }
    }
    x509[name] = completed;
  }
  return { type: 'x509', x509 };
}

function redact(attestation: AttestationMechanism): AttestationMechanism {
  if (attestation.type === 'symmetricKey') return { type: 'symmetricKey', symmetricKey: {} };
  if (attestation.type !== 'x509' || !attestation.x509) return attestation;
  const x509: Record<string, unknown> = { ...attestation.x509 };
  for (const name of CERTIFICATE_PAIRS) {
    const pair = x509[name] as Record<string, { info?: unknown }> | undefined;
    if (pair) x509[name] = Object.fromEntries(Object.entries(pair).map(([k, v]) => [k, { info: v.info }]));
  }
  return { type: 'x509', x509 };
}

function itemId(item: unknown, field: string): string {
  const id = typeof item === 'object' && item !== null ? (item as Record<string, unknown>)[field] : undefined;
  if (typeof id !== 'string' || id === '') throw badRequest(`Every bulk item needs a '${field}'.`, 4);
  return id;
}
