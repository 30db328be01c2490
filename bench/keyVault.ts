// `--key-vault`: each level runs a second time with the Key Vault key provider against a local double of Key Vault
// (dev/keyVaultDouble.ts, in the driver's process: the host reaches it over HTTPS like a remote vault). Reports Key
// Vault calls per registration (0 in steady state) and registrations/s beside the local provider's.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { rootCertificates } from 'node:tls';

import { DevTokenCredential } from '../dev/devCredential';
import type { KeyVaultDouble } from '../dev/keyVaultDouble';
import { startKeyVaultDouble } from '../dev/keyVaultDouble';
import type { CertificateFiles } from '../dev/stack';
import { setAzureClientOverrides } from '../shared/identity';
import type { ScenarioResult } from './scenarios';

export interface KeyVaultBench {
  double: KeyVaultDouble;
  /** Host settings and the credential secret that select the Key Vault provider. */
  settings: Record<string, string>;
  devTokenSecret: string;
}

export interface KeyVaultLevel {
  concurrency: number;
  /** Key Vault operations from the host's start through seeding (the driver's own instance) and warm-up. */
  callsAtStart: number;
  /** Key Vault operations during the measured scenarios. */
  callsMeasured: number;
  registrations: number;
  scenarios: ScenarioResult[];
}

export async function startKeyVaultBench(certs: CertificateFiles): Promise<KeyVaultBench> {
  const credential = new DevTokenCredential(randomBytes(32));
  const double = await startKeyVaultDouble({
    tls: { cert: readFileSync(certs.serverCert, 'utf8'), key: readFileSync(certs.serverKey, 'utf8') },
    tokenSecret: credential.secret,
  });
  // The driver seeds enrollments with the host's settings (bench/seed.ts): it reaches the double the same way.
  setAzureClientOverrides({ credential, disableChallengeResourceVerification: true, agent: devCaAgent(certs) });
  return {
    double,
    settings: { DPS_KEY_VAULT_URL: double.url, DPS_KEY_VAULT_KEY: double.keyName, DPS_MASTER_KEY: '' },
    devTokenSecret: credential.secret.toString('base64'),
  };
}

/** Lines for the text report: per level and registration scenario, local vs Key Vault. */
export function formatKeyVault(levels: readonly KeyVaultLevel[], local: readonly ScenarioResult[]): string {
  const out = ['Key Vault key provider (local double) vs local provider, same run:'];
  for (const level of levels) {
    const perRegistration = level.registrations > 0 ? level.callsMeasured / level.registrations : 0;
    out.push(
      `  c=${level.concurrency}: Key Vault calls per registration ${perRegistration.toFixed(3)} ` +
        `(${level.callsMeasured} in ${level.registrations} measured registrations; ${level.callsAtStart} at the host's and the seeder's start)`,
    );
    for (const kv of level.scenarios.filter((s) => s.unit === 'registration')) {
      const base = local.find((s) => s.scenario === kv.scenario && s.concurrency === kv.concurrency);
      const delta = base && base.perSecond > 0 ? ((kv.perSecond - base.perSecond) / base.perSecond) * 100 : NaN;
      out.push(
        `    ${kv.scenario.padEnd(28)} ${kv.perSecond.toFixed(0).padStart(6)}/s vs local ${(base?.perSecond ?? 0).toFixed(0).padStart(6)}/s` +
          (Number.isNaN(delta) ? '' : ` (${delta >= 0 ? '+' : ''}${delta.toFixed(1)} %)`),
      );
    }
  }
  return out.join('\n');
}

/** The bench's processes start without NODE_EXTRA_CA_CERTS: Key Vault clients trust the run's dev CA through this. */
export function devCaAgent(certs: CertificateFiles): Agent {
  return new Agent({ keepAlive: true, ca: [...rootCertificates, readFileSync(certs.caCert, 'utf8')] });
}
