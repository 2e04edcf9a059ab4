/**
 * A per-key token bucket for log lines that peers can provoke (failed authentications):
 * a peer that retries in a loop must not flood the log. Time comes from the injected
 * clock. Each key may write `burst` lines at once and earns one more every `refillMs`;
 * what it could not write is counted and reported with its next line (`suppressed`).
 * At most `maxKeys` keys are tracked; the oldest is forgotten first.
 */
export interface LogLimitOptions {
  now: () => number;
  burst?: number;
  refillMs?: number;
  maxKeys?: number;
}

interface Bucket {
  tokens: number;
  at: number;
  suppressed: number;
}

export class LogLimiter {
  readonly #now: () => number;
  readonly #burst: number;
  readonly #refillMs: number;
  readonly #maxKeys: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(opts: LogLimitOptions) {
    this.#now = opts.now;
    this.#burst = opts.burst ?? 5;
    this.#refillMs = opts.refillMs ?? 10_000;
    this.#maxKeys = opts.maxKeys ?? 10_000;
  }

  /**
   * May a line for `key` be written now? When it may, `suppressed` says how many lines
   * for the key were held back since its last written line.
   */
  take(key: string): { ok: true; suppressed: number } | { ok: false } {
    const now = this.#now();
    let b = this.#buckets.get(key);
    if (b) {
      const earned = Math.floor((now - b.at) / this.#refillMs);
      if (earned > 0) {
        b.tokens = Math.min(this.#burst, b.tokens + earned);
        b.at += earned * this.#refillMs;
      }
    } else {
      if (this.#buckets.size >= this.#maxKeys) {
        const oldest = this.#buckets.keys().next().value;
        if (oldest !== undefined) this.#buckets.delete(oldest);
      }
      b = { tokens: this.#burst, at: now, suppressed: 0 };
      this.#buckets.set(key, b);
    }
    if (b.tokens < 1) {
      b.suppressed++;
      return { ok: false };
    }
    b.tokens--;
    const suppressed = b.suppressed;
    b.suppressed = 0;
    return { ok: true, suppressed };
  }

  get size(): number {
    return this.#buckets.size;
  }
}
