/**
 * A counting semaphore for async work: at most `n` tasks run at once, the rest wait in call order.
 * The server bounds concurrent image decodes with it (decoding beyond the core count adds threads
 * competing with the event loop and inference, and holds more decoded memory, without adding
 * throughput).
 */
export type Limiter = <T>(task: () => Promise<T>) => Promise<T>;

/**
 * @param n - most tasks running at once (>= 1).
 * @example
 * const limit = createLimiter(2);
 * const pixels = await Promise.all(images.map((b) => limit(() => decodeImage(b, spec))));
 */
export function createLimiter(n: number): Limiter {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(task: () => Promise<T>): Promise<T> => {
    if (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    else active++;
    try {
      return await task();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}
