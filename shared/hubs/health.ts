// Per-instance health of linked IoT hubs (beyond DPS): hub calls that fail or time out put a hub on a cool-down during
// which allocation skips it, unless every candidate is cooling down (then all stay eligible: a possibly-sick hub beats
// no hub). Pure apart from the injected clock; in memory, so each instance learns on its own. `trackHealth` feeds it
// from every registry call of the hub step.
import type { HubClientPool } from '../registration/assign';
import { HubError, HubTimeout } from './registryClient';

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

/**
 * The pool whose clients report each call's outcome to `health`. A hub that answers is healthy, even with a 404 or
 * 409; one that refuses the service's credentials (401/403), throttles (429), fails (5xx), cannot be reached or runs
 * out of time is not: it cannot take devices now.
 */
export function trackHealth(pool: HubClientPool, health: HubHealth): HubClientPool {
  return {
    for(hub) {
      const client = pool.for(hub);
      const tracked =
        <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
        async (...args: A): Promise<R> => {
          try {
            const result = await call(...args);
            health.recordSuccess(hub.hostName);
            return result;
          } catch (err) {
            if (err instanceof HubTimeout) health.recordFailure(hub.hostName, 'timeout', err.message);
            else if (!(err instanceof HubError) || isHubFault(err.status)) {
              health.recordFailure(hub.hostName, 'error', err instanceof Error ? err.message : String(err));
            } else health.recordSuccess(hub.hostName);
            throw err;
          }
        };
      return {
        upsertDevice: tracked(client.upsertDevice.bind(client)),
        applyTwin: tracked(client.applyTwin.bind(client)),
        getTwin: tracked(client.getTwin.bind(client)),
        deleteDevice: tracked(client.deleteDevice.bind(client)),
      };
    },
  };
}

const isHubFault = (status: number): boolean => status === 401 || status === 403 || status === 429 || status >= 500;
