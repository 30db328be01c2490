// A per-instance cache of one slowly changing value (the group list, the linked hubs) with a short TTL.

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
