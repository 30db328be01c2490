// Azure identity: one credential per process (DefaultAzureCredential, user-assigned identity from AZURE_CLIENT_ID) for
// Table Storage, Key Vault and Event Hubs. Dev hosts and tests may substitute one (a static token for emulators).
import type { Agent } from 'node:https';

import type { AccessToken, GetTokenOptions, TokenCredential } from '@azure/core-auth';
import type * as Identity from '@azure/identity';

/** What a dev host or a test may substitute: the credential, and Key Vault's challenge check (doubles on localhost). */
export interface AzureClientOverrides {
  credential?: TokenCredential;
  /** Key Vault clients normally refuse a challenge whose resource is not the vault's domain; a local double can't match. */
  disableChallengeResourceVerification?: boolean;
  /** An HTTPS agent for Key Vault, e.g. trusting a dev CA in a process started without NODE_EXTRA_CA_CERTS. */
  agent?: Agent;
}

let overrides: AzureClientOverrides = {};

/** For dev hosts and tests only; applies to services built afterwards. */
export function setAzureClientOverrides(value: AzureClientOverrides): void {
  overrides = value;
}

export function azureClientOverrides(): Readonly<AzureClientOverrides> {
  return overrides;
}

/**
 * The process's Azure credential. `@azure/identity` is loaded on the first token request, not at import: it costs
 * ~150 ms of cold start, and a deployment on connection strings (or Azurite) never needs it.
 */
export function azureCredential(clientId: string | undefined): TokenCredential {
  if (overrides.credential) return overrides.credential;
  if (!shared || shared.clientId !== clientId) shared = { clientId, credential: lazyDefaultCredential(clientId) };
  return shared.credential;
}

let shared: { clientId: string | undefined; credential: TokenCredential } | undefined;

function lazyDefaultCredential(clientId: string | undefined): TokenCredential {
  let inner: TokenCredential | undefined;
  return {
    async getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken | null> {
      if (!inner) {
        // Required, not import()ed: the CommonJS build shares its @azure/core-* modules with the other clients.
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const { DefaultAzureCredential } = require('@azure/identity') as typeof Identity;
        inner = new DefaultAzureCredential(clientId ? { managedIdentityClientId: clientId } : {});
      }
      return inner.getToken(scopes, options);
    },
  };
}
