// Per-instance caches: one slowly changing value (the group list, the linked hubs), and recent values by key.

export class TtlCache<T> {
  private value: Promise<T> | undefined;
  private loadedAt = 0;

  constructor(
    private readonly load: () => Promise<T>,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get(): Promise<T> {
    if (!this.value || this.now() - this.loadedAt >= this.ttlMs) {
      this.loadedAt = this.now();
      const loading = this.load();
      // A failed load is not cached: the next caller tries again.
      loading.catch(() => {
        if (this.value === loading) this.value = undefined;
      });
      this.value = loading;
    }
    return this.value;
  }

  /** Forget the value, e.g. after this instance wrote a change. */
  invalidate(): void {
    this.value = undefined;
  }
}

/**
 * A per-instance memory of recent values by key (e.g. which enrollment attested a device a moment ago), short-lived
 * and bounded: the oldest entry goes first when it is full.
 */
export class RecentMap<K, V> {
  private readonly entries = new Map<K, { value: V; at: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  get(key: K): V | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (this.now() - entry.at < this.ttlMs) return entry.value;
    this.entries.delete(key);
    return undefined;
  }

  set(key: K, value: V): void {
    // Re-inserting moves the key to the end, so Map order is age order: expired entries sit at the front.
    this.entries.delete(key);
    const now = this.now();
    for (const [oldest, entry] of this.entries) {
      if (this.entries.size < this.maxEntries && now - entry.at < this.ttlMs) break;
      this.entries.delete(oldest);
    }
    this.entries.set(key, { value, at: now });
  }

  delete(key: K): void {
    this.entries.delete(key);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
