// Per-instance health of linked IoT hubs (beyond DPS): hub calls that fail or time out put a hub on a cool-down during
// which allocation skips it, unless every candidate is cooling down (then all stay eligible: a possibly-sick hub beats
// no hub). Pure apart from the injected clock; in memory, so each instance learns on its own.

export type HubFailureKind = 'error' | 'timeout';

export interface HubHealthOptions {
  /** Consecutive failures that make a hub unhealthy; default 2 (one blip is not a sick hub). */
  failureThreshold?: number;
  /** How long an unhealthy hub is skipped, in ms; default 30,000. */
  coolDownMs?: number;
  /** Milliseconds since the epoch; default Date.now. */
  clock?: () => number;
}

/** One hub's health as the linked-hubs API shows it (no secrets: host name, counts, times, a short message). */
export interface HubHealthSnapshot {
  hostName: string;
  healthy: boolean;
  consecutiveFailures: number;
  /** ISO time until which allocation skips the hub; present while it is cooling down. */
  unhealthyUntil?: string;
  lastFailure?: { kind: HubFailureKind; at: string; message: string };
}

interface Entry {
  hostName: string;
  consecutiveFailures: number;
  unhealthyUntil: number;
  lastFailure: { kind: HubFailureKind; at: number; message: string };
}

const MAX_MESSAGE = 200;

export class HubHealth {
  private readonly entries = new Map<string, Entry>();
  private readonly threshold: number;
  private readonly coolDownMs: number;
  private readonly clock: () => number;

  constructor(options: HubHealthOptions = {}) {
    this.threshold = Math.max(1, options.failureThreshold ?? 2);
    this.coolDownMs = Math.max(0, options.coolDownMs ?? 30_000);
    this.clock = options.clock ?? Date.now;
  }

  /**
   * A hub call failed (connection error, 5xx, throttling) or ran out of time. At the threshold the hub cools down;
   * after the cool-down it is tried again, and a failure of that first try starts a new cool-down at once.
   * `message` must carry no secret (it is shown by the linked-hubs API); it is cut to 200 characters.
   */
  recordFailure(hostName: string, kind: HubFailureKind, message = ''): void {
    const key = hostName.toLowerCase();
    const now = this.clock();
    const entry = this.entries.get(key) ?? {
      hostName,
      consecutiveFailures: 0,
      unhealthyUntil: 0,
      lastFailure: { kind, at: now, message: '' },
    };
    entry.consecutiveFailures += 1;
    entry.lastFailure = { kind, at: now, message: message.slice(0, MAX_MESSAGE) };
    if (entry.consecutiveFailures >= this.threshold) entry.unhealthyUntil = now + this.coolDownMs;
    this.entries.set(key, entry);
  }

  /** A hub call succeeded: the hub is healthy again and its failure count starts over. */
  recordSuccess(hostName: string): void {
    this.entries.delete(hostName.toLowerCase());
  }

  isHealthy(hostName: string): boolean {
    const entry = this.entries.get(hostName.toLowerCase());
    return !entry || entry.unhealthyUntil <= this.clock();
  }

  /**
   * The candidates that are not cooling down, in their order; all of them when every one is (never an empty list
   * for a non-empty input, so allocation still has a hub to try).
   */
  healthy<T extends { hostName: string }>(candidates: readonly T[]): T[] {
    const healthy = candidates.filter((c) => this.isHealthy(c.hostName));
    return healthy.length > 0 ? healthy : [...candidates];
  }

  /** The health of the named hubs (e.g. every linked hub), in their order; hubs never seen failing are healthy. */
  snapshot(hostNames: readonly string[]): HubHealthSnapshot[] {
    const now = this.clock();
    return hostNames.map((hostName) => {
      const entry = this.entries.get(hostName.toLowerCase());
      if (!entry) return { hostName, healthy: true, consecutiveFailures: 0 };
      const coolingDown = entry.unhealthyUntil > now;
      return {
        hostName,
        healthy: !coolingDown,
        consecutiveFailures: entry.consecutiveFailures,
        ...(coolingDown ? { unhealthyUntil: new Date(entry.unhealthyUntil).toISOString() } : {}),
        lastFailure: {
          kind: entry.lastFailure.kind,
          at: new Date(entry.lastFailure.at).toISOString(),
          message: entry.lastFailure.message,
        },
      };
    });
  }
}
