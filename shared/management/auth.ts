// Service-API authorization: `SharedAccessSignature sr={host}&sig&se&skn={policy}` against the shared access
// policies (the root policy from settings, others from the service configuration), then the policy's rights.
import type { AccessPolicy, Right } from '../domain/serviceConfig';
import { unauthorized } from '../errors';
import { assertNotExpired, parseSas, verifySignature } from '../http/sas';
import type { ServiceRequest } from './serviceRequest';

export interface AuthorizerPorts {
  /** `provisioningserviceowner`, configured by settings; undefined when no owner key is set. */
  root?: AccessPolicy;
  policies(): Promise<AccessPolicy[]>;
  /** Host names a token's `sr` may name; empty: the request's Host header. */
  hostNames: readonly string[];
  clock: () => Date;
  /** DPS_MAX_SAS_LIFETIME_SECONDS (default one year). */
  maxSasLifetimeSeconds?: number;
}

export class ServiceAuthorizer {
  constructor(private readonly ports: AuthorizerPorts) {}

  /** The request's policy has `right` (a request whose token was not checked yet is authenticated first). */
  async require(request: ServiceRequest, right: Right): Promise<void> {
    const policy = request.policy ?? (await this.authenticate(request));
    if (!policy.rights.includes(right)) {
      throw unauthorized(`The access policy '${policy.name}' does not have the '${right}' right this operation needs.`);
    }
  }

  /** The access policy whose key signed the request's token (401 otherwise); its rights are not checked. */
  async authenticate(request: Pick<ServiceRequest, 'authorization' | 'host'>): Promise<AccessPolicy> {
    if (request.authorization && /^bearer /i.test(request.authorization)) {
      throw unauthorized('Microsoft Entra tokens are not supported: use a SharedAccessSignature of an access policy.');
    }
    const token = parseSas(request.authorization);
    assertNotExpired(token, this.ports.clock(), this.ports.maxSasLifetimeSeconds);
    // sr is the service host name, verbatim from the connection string (it may carry a port).
    const hosts = this.ports.hostNames.length > 0 ? this.ports.hostNames : request.host ? [request.host] : [];
    if (!hosts.some((h) => h.toLowerCase() === token.resource.toLowerCase())) {
      throw unauthorized(
        `The SharedAccessSignature resource (sr) '${token.resource}' is not this service's host name.`,
      );
    }
    if (!token.keyName) throw unauthorized('The SharedAccessSignature must name its access policy (skn).');
    const name = token.keyName.toLowerCase();
    const policy =
      this.ports.root && this.ports.root.name.toLowerCase() === name
        ? this.ports.root
        : (await this.ports.policies()).find((p) => p.name.toLowerCase() === name);
    const signed =
      policy !== undefined &&
      [policy.primaryKey, policy.secondaryKey].some(
        (k) => k !== '' && verifySignature(token, Buffer.from(k, 'base64')),
      );
    if (!policy || !signed) throw unauthorized('The SharedAccessSignature is not valid for any access policy.');
    return policy;
  }
}
