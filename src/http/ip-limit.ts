/**
 * Per-address request counts in fixed one-minute windows, on the injected clock: the
 * public routes' rate limit and the admin API's failed-token limit both use it. Windows
 * that ended are swept at most once a minute.
 */
/** A fixed one-minute window per (bucket, IP): cheap and predictable. */
export class IpRateLimiter {
  readonly #windows = new Map<string, { start: number; count: number }>();
  readonly #now: () => number;
  #lastSweep = 0;

  constructor(now: () => number) {
    this.#now = now;
  }

  /** Counts one request; returns 0 if allowed, else the ms until the window resets. */
  take(bucket: string, ip: string, perMinute: number): number {
    const now = this.#now();
    if (now - this.#lastSweep >= 60_000) {
      this.#lastSweep = now;
      for (const [k, w] of this.#windows) if (now - w.start >= 60_000) this.#windows.delete(k);
    }
    const key = `${bucket}\u0000${ip}`;
    let w = this.#windows.get(key);
    if (!w || now - w.start >= 60_000) {
      w = { start: now, count: 0 };
      this.#windows.set(key, w);
    }
    w.count++;
    return w.count <= perMinute ? 0 : w.start + 60_000 - now;
  }

  /** The ms until `ip` is under `perMinute` again in `bucket`, without counting; 0 if it is now. */
  peek(bucket: string, ip: string, perMinute: number): number {
    const now = this.#now();
    const w = this.#windows.get(`${bucket}\u0000${ip}`);
    if (!w || now - w.start >= 60_000 || w.count < perMinute) return 0;
    return w.start + 60_000 - now;
  }

  get size(): number {
    return this.#windows.size;
  }
}
