// Explicit wiring: builds the real ports once per instance, lazily, from the configuration. No container.
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { createSecureContext, rootCertificates } from 'node:tls';

import { SymmetricKeyAttestor } from './attestation/symmetricKey';
import { TpmAttestor } from './attestation/tpm/attestor';
import { TableTpmChallengeStore } from './attestation/tpm/challengeStore';
import { X509Attestor } from './attestation/x509/attestor';
import type { Config } from './config';
import type { EnrollmentGroup, IndividualEnrollment } from './domain/enrollment';
import { config, resetConfig } from './config';
import { RIGHTS } from './domain/serviceConfig';
import type { EventOrigin } from './events/catalogue';
import { eventSource } from './events/catalogue';
import { confirmer } from './events/confirm';
import type { EventPorts } from './events/outbox';
import { Outbox } from './events/outbox';
import { RegistrationJournal } from './events/registrationJournal';
import { EventHubsSink, LocalSink } from './events/sinks';
import { HubHealth, trackHealth } from './hubs/health';
import { HubClients } from './hubs/registryClient';
import { azureClientOverrides, azureCredential } from './identity';
import { ServiceAuthorizer } from './management/auth';
import { CertificateManager } from './management/certificates';
import { ConfigurationManager } from './management/configuration';
import { EnrollmentManager, enrollmentEtag, groupKind, individualKind } from './management/enrollments';
import { RegistrationStateManager } from './management/registrations';
import type { RecentAttestation } from './registration/service';
import { RegistrationService } from './registration/service';
import { SecretBox } from './secrets/envelope';
import type { KeyProvider } from './secrets/keyProvider';
import { chainProviders } from './secrets/keyProvider';
import { KeyVaultKeyProvider } from './secrets/keyVaultKeyProvider';
import { LocalKeyProvider } from './secrets/localKeyProvider';
import { RecentMap, TtlCache } from './storage/cache';
import { CaCertificateStore } from './storage/caCertificates';
import { DeviceRepository } from './storage/devices';
import { EnrollmentTable, groupLayout, individualLayout } from './storage/enrollmentTable';
import { ServiceConfigStore } from './storage/serviceConfig';
import { DataKeyTable } from './storage/dataKeys';
import { createTables } from './storage/tables';

export const ROOT_POLICY = 'provisioningserviceowner';

export interface Services {
  config: Config;
  devices: DeviceRepository;
  enrollments: EnrollmentTable<IndividualEnrollment>;
  groups: EnrollmentTable<EnrollmentGroup>;
  configuration: ServiceConfigStore;
  registration: RegistrationService;
  /** The events outbox (send, sweep, stats) and the events' origin. */
  events: { outbox: Outbox; origin: EventOrigin };
  management: {
    enrollments: EnrollmentManager<IndividualEnrollment>;
    groups: EnrollmentManager<EnrollmentGroup>;
    registrations: RegistrationStateManager;
    configuration: ConfigurationManager;
    certificates: CertificateManager;
    /** Who signed a service request; each operation still checks its right. */
    auth: ServiceAuthorizer;
  };
  /** Drops this instance's cached groups, configuration and recent attestations, after it changed them itself. */
  invalidateCaches(): void;
}

export function createServices(cfg: Config): { ready: Promise<void>; services: Services } {
  // Built on first use only: a deployment on connection strings and the local key provider never needs it.
  const credential = () => azureCredential(cfg.azureClientId);
  const tables = createTables({
    prefix: cfg.tablePrefix,
    ...(cfg.tablesEndpoint
      ? { endpoint: cfg.tablesEndpoint, credential: credential() }
      : { connectionString: cfg.tablesConnectionString }),
  });
  const secrets = new SecretBox(keyProvider(cfg, credential), new DataKeyTable(tables.config));
  const enrollments = new EnrollmentTable(tables.devices, secrets, individualLayout);
  const groups = new EnrollmentTable(tables.groups, secrets, groupLayout);
  const configuration = new ServiceConfigStore(tables.config, secrets);
  const origin: EventOrigin = { source: eventSource(cfg.events.sourceHost), clock: () => new Date() };
  const outbox = new Outbox({
    table: tables.outbox,
    recentEvents: (partition) => devices.recentEvents(partition),
    sink: cfg.events.eventHubs
      ? new EventHubsSink(cfg.events.eventHubs, {}, credential)
      : new LocalSink({
          ...(cfg.events.file ? { file: cfg.events.file } : {}),
          ...(cfg.events.console ? { log: (line: string) => console.log(line) } : {}),
        }),
    confirm: (events) => confirm(events),
    sweepAfterMs: cfg.events.sweepAfterMs,
    // Beyond the longest a change can still be landing: a register PUT's budget, its hub step, and Table retries.
    settleAfterMs: Math.max(cfg.events.sweepAfterMs, 2 * (cfg.registerBudgetMs + cfg.hubTimeoutMs) + 120_000),
    log: (message) => console.warn(`[events] ${message}`),
  });
  // DPS_EVENTS=off: no event is recorded (the benchmark's baseline); the outbox still sweeps what was left.
  const events: EventPorts | undefined = cfg.events.enabled ? { outbox, origin } : undefined;
  const devices = new DeviceRepository(tables.devices, enrollments);
  const confirm = confirmer({ enrollments, groups, devices, configuration, etagOf: enrollmentEtag });
  const groupCache = new TtlCache(async () => (await groups.list()).map((g) => g.value), cfg.cacheTtlMs);
  const configCache = new TtlCache(() => configuration.load(), cfg.cacheTtlMs);
  const caStore = new CaCertificateStore(tables.config);
  const caCache = new TtlCache(async () => (await caStore.list()).map((c) => c.value), cfg.cacheTtlMs);
  const recentAttestations = new RecentMap<string, RecentAttestation>(cfg.cacheTtlMs);
  const agent = hubAgent(cfg.hubCaFile);
  const hubHealth = new HubHealth({ failureThreshold: cfg.hubFailureThreshold, coolDownMs: cfg.hubCoolDownMs });
  const registration = new RegistrationService({
    idScope: cfg.idScope,
    devices,
    groups: { list: () => groupCache.get() },
    configuration: configCache,
    hubs: trackHealth(new HubClients(agent, cfg.hubTimeoutMs, credential), hubHealth),
    allocation: {
      geo: { ...(cfg.region ? { region: cfg.region } : {}), latencies: cfg.regionLatencies },
      health: hubHealth,
      webhookTimeoutMs: cfg.webhookTimeoutMs,
      log: (message) => console.warn(`[allocation] ${message}`),
    },
    attestors: {
      symmetricKey: new SymmetricKeyAttestor({ maxSasLifetimeSeconds: cfg.maxSasLifetimeSeconds }),
      tpm: new TpmAttestor(new TableTpmChallengeStore(tables.devices, secrets), cfg.maxSasLifetimeSeconds),
      x509: new X509Attestor(caCache),
    },
    recentAttestations,
    clock: () => new Date(),
    budgetMs: cfg.registerBudgetMs,
    hubDeadlineMs: cfg.hubTimeoutMs,
    retryAfterSeconds: cfg.retryAfterSeconds,
    log: (message) => console.warn(`[registration] ${message}`),
    ...(events ? { events: new RegistrationJournal(outbox, origin) } : {}),
  });
  const invalidateCaches = () => {
    groupCache.invalidate();
    configCache.invalidate();
    caCache.invalidate();
    recentAttestations.clear();
  };
  const clock = () => new Date();
  const auth = new ServiceAuthorizer({
    maxSasLifetimeSeconds: cfg.maxSasLifetimeSeconds,
    ...(cfg.serviceOwnerKey
      ? { root: { name: ROOT_POLICY, rights: [...RIGHTS], primaryKey: cfg.serviceOwnerKey, secondaryKey: '' } }
      : {}),
    policies: async () => (await configCache.get()).accessPolicies,
    hostNames: cfg.serviceHostNames,
    clock,
  });
  const certificates = new CertificateManager({
    store: caStore,
    auth,
    clock,
    changed: invalidateCaches,
  });
  const checkCas = () => certificates.caReferenceCheck();
  const registrations = new RegistrationStateManager(devices, auth, events);
  const management = {
    enrollments: new EnrollmentManager(
      individualKind,
      enrollments,
      auth,
      clock,
      invalidateCaches,
      events,
      checkCas,
      (id) => registrations.stateOf(id),
    ),
    groups: new EnrollmentManager(groupKind, groups, auth, clock, invalidateCaches, events, checkCas),
    registrations,
    configuration: new ConfigurationManager({
      store: configuration,
      auth,
      idScope: cfg.idScope,
      rootPolicyName: ROOT_POLICY,
      serviceHostNames: cfg.serviceHostNames,
      health: hubHealth,
      changed: invalidateCaches,
      events,
      rewrapDataKeys: () => secrets.rewrap(),
    }),
    certificates,
    auth,
  };
  return {
    ready: tables.ensure(),
    services: {
      config: cfg,
      devices,
      enrollments,
      groups,
      configuration,
      registration,
      events: { outbox, origin },
      management,
      invalidateCaches,
    },
  };
}

/** Key Vault when configured (the local master key, if also set, still opens what it sealed before); else local. */
function keyProvider(cfg: Config, credential: () => ReturnType<typeof azureCredential>): KeyProvider {
  const local = cfg.masterKey ? new LocalKeyProvider(cfg.masterKey) : undefined;
  if (cfg.keyVault) {
    const { disableChallengeResourceVerification, agent } = azureClientOverrides();
    const keyVault = new KeyVaultKeyProvider({
      vaultUrl: cfg.keyVault.url,
      keyName: cfg.keyVault.keyName,
      credential: credential(),
      ...(disableChallengeResourceVerification ? { disableChallengeResourceVerification } : {}),
      ...(agent ? { agent } : {}),
    });
    return local ? chainProviders(keyVault, local) : keyVault;
  }
  if (!local) throw new Error('No key provider: set DPS_KEY_VAULT_URL or DPS_MASTER_KEY.');
  return local;
}

/**
 * One keep-alive agent for every hub. An extra trusted CA is built into a secure context once: passed as `ca`, Node
 * would join the whole root store into the pool key on every request and parse ~145 certificates per new socket.
 */
function hubAgent(caFile: string | undefined): Agent {
  if (!caFile) return new Agent({ keepAlive: true });
  const secureContext = createSecureContext({ ca: [...rootCertificates, readFileSync(caFile, 'utf8')] });
  return new Agent({ keepAlive: true, secureContext });
}

let instance: Promise<Services> | undefined;

/**
 * Forgets the instance's services and configuration, so the next request builds them afresh from the environment
 * (caches and data keys empty), as a new instance would. For dev hosts and tests that start a stack per process.
 */
export function resetServices(): void {
  instance = undefined;
  resetConfig();
}

/** The instance's services, built on first use; tables are created before the first request is served. */
export function services(): Promise<Services> {
  instance ??= (async () => {
    const built = createServices(config());
    await built.ready;
    return built.services;
  })();
  instance.catch(() => {
    instance = undefined; // a failed start (e.g. storage down) is retried by the next request
  });
  return instance;
}
