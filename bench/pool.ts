// A fixed-concurrency work pool: the closed-loop load model (each worker sends its next request when one ends).
/** Runs `task(0…count-1)` with at most `concurrency` in flight; resolves with the wall time in ms. */
export async function runPool(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (next < count) {
      const index = next++;
      await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, worker));
  return performance.now() - started;
}
