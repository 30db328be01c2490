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
      out.push(
        `    ${kv.scenario.padEnd(28)} ${kv.perSecond.toFixed(0).padStart(6)}/s vs local ${(base?.perSecond ?? 0).toFixed(0).padStart(6)}/s` +
          `${percent(kv.perSecond, base?.perSecond)}; host CPU ${kv.hostCpuMsPerOp.toFixed(2)} vs ` +
          `${(base?.hostCpuMsPerOp ?? 0).toFixed(2)} ms/registration${percent(kv.hostCpuMsPerOp, base?.hostCpuMsPerOp)}` +
          `; table requests ${kv.tableRequestsPerOp.toFixed(2)} vs ${(base?.tableRequestsPerOp ?? 0).toFixed(2)}` +
          `; rest of the machine ${noise(kv)} vs ${base ? noise(base) : '?'}`,
      );
    }
  }
  out.push(
    '  Registrations/s swing with the rest of the machine (other processes); host CPU per registration and table',
    '  requests per registration are the provider-dependent cost, and are what to compare on a busy machine.',
  );
  return out.join('\n');
}

const percent = (value: number, base: number | undefined): string =>
  base && base > 0 ? ` (${value >= base ? '+' : ''}${(((value - base) / base) * 100).toFixed(1)} %)` : '';

/** The CPU the rest of the machine used during the scenario, in cores (100 % = one core), when measured. */
const noise = (s: ScenarioResult): string =>
  s.cpuPercent.other === undefined ? '?' : `${(s.cpuPercent.other / 100).toFixed(1)} cores`;

/** The bench's processes start without NODE_EXTRA_CA_CERTS: Key Vault clients trust the run's dev CA through this. */
export function devCaAgent(certs: CertificateFiles): Agent {
  return new Agent({ keepAlive: true, ca: [...rootCertificates, readFileSync(certs.caCert, 'utf8')] });
}
