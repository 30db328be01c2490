// CA certificate management (DPS keeps these in ARM as `provisioningServices/{dps}/certificates/{name}`; here in the
// service API with the ServiceConfig right, in ARM's shapes so tooling maps): upload a root or intermediate, list, get,
// delete with ETags, and proof of possession — generateVerificationCode, then verify a certificate whose subject CN is
// the code, signed by the CA's key. Only verified CAs anchor enrollment groups' caReferences.
import { randomBytes } from 'node:crypto';

import type { ParsedCertificate } from '../attestation/x509/certificate';
import { CertificateError, certificateDer, describe, parseCertificate } from '../attestation/x509/certificate';
import type { CaCertificate } from '../domain/caCertificate';
import { CA_CERTIFICATE_NAME, MAX_CA_CERTIFICATES } from '../domain/caCertificate';
import type { EnrollmentCommon } from '../domain/enrollment';
import { invalid, object, optionalString, rejectUnknown } from '../domain/validate';
import type { DpsError } from '../errors';
import { badRequest, notFound, preconditionFailed } from '../errors';
import type { JsonResult } from '../http/response';
import type { CaCertificateStore } from '../storage/caCertificates';
import type { Versioned } from '../storage/enrollmentTable';
import { publicEtag, rowEtag } from '../storage/etag';
import type { ServiceAuthorizer } from './auth';
import type { ServiceRequest } from './serviceRequest';

const TYPE = 'Microsoft.Devices/provisioningServices/Certificates';

export interface CertificatePorts {
  store: CaCertificateStore;
  auth: ServiceAuthorizer;
  clock: () => Date;
  /** Called after every change, so this instance's caches see it at once. */
  changed: () => void;
}

export class CertificateManager {
  constructor(private readonly ports: CertificatePorts) {}

  async list(request: ServiceRequest): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    const all = await this.ports.store.list();
    return { status: 200, body: { value: all.map((c) => view(c)) } };
  }

  async get(request: ServiceRequest, name: string): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    return withEtag(view(await this.existing(name)));
  }

  /**
   * Uploads a CA certificate (ARM CertificateBodyDescription: `{properties: {certificate, isVerified?}}`, PEM or base64
   * DER). Re-uploading the same certificate keeps its verification; a different one starts unverified. `isVerified:
   * true` is ARM's self-attestation by an operator who holds ServiceConfig, accepted as DPS accepts it.
   */
  async put(request: ServiceRequest, name: string): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    assertName(name);
    const body = object(request.body, 'body');
    rejectUnknown(body, new Set(['properties', 'name', 'id', 'type', 'etag', 'certificate']));
    // ARM 2017-08-21-preview took `certificate` at the top level; later versions under `properties`.
    const props =
      body.properties === undefined || body.properties === null ? body : object(body.properties, 'properties');
    const prefix = props === body ? '' : 'properties.';
    if (props !== body) {
      rejectUnknown(
        props,
        new Set([
          'certificate',
          'isVerified',
          'subject',
          'expiry',
          'thumbprint',
          'created',
          'updated',
          'verificationCode',
        ]),
        prefix,
      );
    }
    const text = optionalString(props, 'certificate', `${prefix}certificate`);
    if (!text) throw invalid(`${prefix}certificate`, 'is required (PEM or base64 DER).');
    const selfAttested = props.isVerified ?? false;
    if (typeof selfAttested !== 'boolean') throw invalid(`${prefix}isVerified`, 'must be true or false.');
    const parsed = parseCa(text, `${prefix}certificate`, this.ports.clock());

    const current = await this.ports.store.get(name);
    const etag = request.ifMatch === undefined ? undefined : rowEtag(request.ifMatch);
    if (etag !== undefined && (!current || (etag !== '*' && current.etag !== etag))) throw preconditionFailed();
    if (!current && (await this.ports.store.list()).length >= MAX_CA_CERTIFICATES) {
      throw badRequest(`A provisioning service holds at most ${MAX_CA_CERTIFICATES} CA certificates.`, 4);
    }
    const now = this.ports.clock().toISOString();
    const der = parsed.x509.raw.toString('base64');
    const same = current?.value.certificate === der;
    const certificate: CaCertificate = {
      name: current?.value.name ?? name,
      certificate: der,
      isVerified: selfAttested || (same && current.value.isVerified),
      ...(same && current.value.verificationCode ? { verificationCode: current.value.verificationCode } : {}),
      created: current?.value.created ?? now,
      updated: now,
    };
    const saved = await this.ports.store.save(certificate, current ? (etag ?? current.etag) : undefined);
    this.ports.changed();
    return withEtag(view({ value: certificate, etag: saved }));
  }

  async delete(request: ServiceRequest, name: string): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    assertName(name);
    const etag = request.ifMatch === undefined ? '*' : rowEtag(request.ifMatch);
    if (!(await this.ports.store.delete(name, etag))) throw notFoundError(name);
    this.ports.changed();
    return { status: 204 };
  }

  /** A fresh code for proof of possession (ARM VerificationCodeResponse); a new code replaces the previous one. */
  async generateVerificationCode(request: ServiceRequest, name: string): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    const current = await this.conditional(request, name);
    const certificate: CaCertificate = {
      ...current.value,
      verificationCode: randomBytes(24).toString('hex').toUpperCase(),
      updated: this.ports.clock().toISOString(),
    };
    const saved = await this.ports.store.save(certificate, current.etag);
    return withEtag(view({ value: certificate, etag: saved }, true));
  }

  /**
   * Proof of possession: `{certificate}` (PEM or base64 DER) whose subject CN is the verification code, issued and
   * signed by this CA's key, valid now. The CA is then verified and the code spent.
   */
  async verify(request: ServiceRequest, name: string): Promise<JsonResult> {
    await this.ports.auth.require(request, 'ServiceConfig');
    const body = object(request.body, 'body');
    rejectUnknown(body, new Set(['certificate']));
    const text = optionalString(body, 'certificate');
    if (!text) throw invalid('certificate', 'is required: the verification certificate, PEM or base64 DER.');
    const current = await this.conditional(request, name);
    const code = current.value.verificationCode;
    if (!code) {
      throw badRequest(
        `The CA certificate '${name}' has no verification code: call generateVerificationCode first.`,
        4,
      );
    }
    const ca = parseCertificate(Buffer.from(current.value.certificate, 'base64'), `CA certificate '${name}'`);
    let proof: ParsedCertificate;
    try {
      proof = parseCertificate(certificateDer(text, 'The verification certificate'), 'The verification certificate');
    } catch (err) {
      if (err instanceof CertificateError) throw invalid('certificate', err.message);
      throw err;
    }
    const problem = proofProblem(proof, ca, code, this.ports.clock());
    if (problem) throw badRequest(`The verification certificate ${problem}`, 4);
    const certificate: CaCertificate = {
      name: current.value.name,
      certificate: current.value.certificate,
      isVerified: true,
      created: current.value.created,
      updated: this.ports.clock().toISOString(),
    };
    const saved = await this.ports.store.save(certificate, current.etag);
    this.ports.changed();
    return withEtag(view({ value: certificate, etag: saved }));
  }

  /**
   * The enrollment-time check, for one request: every CA an X.509 enrollment references by name exists and is
   * verified (a 400 now rather than a mystery at each device's registration). The CA list is read once, when first
   * needed, however many enrollments of a bulk operation it checks.
   */
  caReferenceCheck(): (enrollment: EnrollmentCommon) => Promise<void> {
    let list: ReturnType<CaCertificateStore['list']> | undefined;
    return async (enrollment) => {
      const refs = enrollment.attestation.x509?.caReferences as { primary?: string; secondary?: string } | undefined;
      if (enrollment.attestation.type !== 'x509' || !refs) return;
      list ??= this.ports.store.list();
      this.assertReferenced(refs, await list);
    };
  }

  private assertReferenced(
    refs: { primary?: string; secondary?: string },
    all: Awaited<ReturnType<CaCertificateStore['list']>>,
  ): void {
    for (const which of ['primary', 'secondary'] as const) {
      const ref = refs[which];
      if (!ref) continue;
      const field = `attestation.x509.caReferences.${which}`;
      const ca = all.find((c) => c.value.name.toLowerCase() === ref.toLowerCase());
      if (!ca) throw invalid(field, `no CA certificate named '${ref}' was uploaded (PUT /certificates/${ref}).`);
      if (!ca.value.isVerified) {
        throw invalid(field, `the CA certificate '${ref}' is not verified: prove possession of its key first.`);
      }
    }
  }

  private async existing(name: string): Promise<Versioned<CaCertificate>> {
    assertName(name);
    const current = await this.ports.store.get(name);
    if (!current) throw notFoundError(name);
    return current;
  }

  /** The certificate, if If-Match (when sent) names its current version. */
  private async conditional(request: ServiceRequest, name: string): Promise<Versioned<CaCertificate>> {
    const current = await this.existing(name);
    const etag = request.ifMatch === undefined ? undefined : rowEtag(request.ifMatch);
    if (etag !== undefined && etag !== '*' && etag !== current.etag) throw preconditionFailed();
    return current;
  }
}

/** A CA upload: a certificate with basicConstraints CA:TRUE, not expired. */
function parseCa(text: string, field: string, now: Date): ParsedCertificate {
  let parsed: ParsedCertificate;
  try {
    parsed = parseCertificate(certificateDer(text, 'The certificate'), 'The certificate');
  } catch (err) {
    if (err instanceof CertificateError) throw invalid(field, err.message);
    throw err;
  }
  if (!parsed.basicConstraints?.ca) {
    throw invalid(field, `${describe(parsed)} is not a CA certificate (basicConstraints CA:TRUE is missing).`);
  }
  if (parsed.notAfter < now) throw invalid(field, `${describe(parsed)} expired at ${parsed.notAfter.toISOString()}.`);
  if (parsed.keyProblem) throw invalid(field, `${describe(parsed)} has ${parsed.keyProblem}.`);
  // It could never anchor a chain (chain.ts refuses it), so refusing it here says why now rather than per device.
  const unknown = parsed.unknownCriticalExtensions;
  if (unknown.length > 0) {
    throw invalid(
      field,
      `${describe(parsed)} has a critical extension this service does not support (${unknown.join(', ')}).`,
    );
  }
  return parsed;
}

function proofProblem(proof: ParsedCertificate, ca: ParsedCertificate, code: string, now: Date): string | undefined {
  if (proof.commonName !== code) {
    return `has subject CN '${proof.commonName ?? ''}', not the verification code '${code}'.`;
  }
  if (proof.issuer !== ca.subject) return `is not issued by ${describe(ca)} (its issuer is ${proof.issuer}).`;
  let signed = false;
  try {
    signed = proof.x509.verify(ca.publicKey);
  } catch {
    signed = false;
  }
  if (!signed) return `is not signed by the key of ${describe(ca)}.`;
  if (now < proof.notBefore || now > proof.notAfter) return 'is not valid now.';
  return undefined;
}

function assertName(name: string): void {
  if (!CA_CERTIFICATE_NAME.test(name)) {
    throw invalid('name', 'use 1-64 letters, digits, ., _ or -, starting with a letter or digit.');
  }
}

const notFoundError = (name: string): DpsError => notFound(`The CA certificate '${name}' was not found.`, 404205);

/** ARM's CertificateResponse (or VerificationCodeResponse with the code); times as ARM shows them (RFC 1123). */
function view({ value, etag }: Versioned<CaCertificate>, withCode = false): Record<string, unknown> {
  const parsed = parseCertificate(Buffer.from(value.certificate, 'base64'), `CA certificate '${value.name}'`);
  return {
    name: value.name,
    id: `/certificates/${value.name}`,
    type: TYPE,
    etag: publicEtag(etag),
    properties: {
      ...(withCode && value.verificationCode ? { verificationCode: value.verificationCode } : {}),
      subject: describe(parsed),
      expiry: parsed.notAfter.toUTCString(),
      thumbprint: parsed.sha1,
      isVerified: value.isVerified,
      certificate: value.certificate,
      created: new Date(value.created).toUTCString(),
      updated: new Date(value.updated).toUTCString(),
    },
  };
}

function withEtag(body: Record<string, unknown>): JsonResult {
  return { status: 200, body, headers: { ETag: `"${String(body.etag)}"` } };
}
