/**
 * Token buckets on the injected clock, for any dialect: a sender's rate limit, or a cap
 * on log lines per peer. A bucket holds at most `burst` tokens and gains `perSecond`
 * tokens a second; taking more than it holds is refused and takes nothing.
 */
export interface Rate {
  /** Tokens added per second (0: unlimited). */
  readonly perSecond: number;
  /** Most tokens the bucket can hold (the largest burst). */
  readonly burst: number;
}

export class TokenBucket {
  readonly #now: () => number;
  readonly #rate: Rate;
  #tokens: number;
  #at: number;

  constructor(now: () => number, rate: Rate) {
    this.#now = now;
    this.#rate = rate;
    this.#tokens = rate.burst;
    this.#at = now();
  }

  get unlimited(): boolean {
    return this.#rate.perSecond <= 0;
  }

  /** Tokens now in the bucket. */
  get tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  /** Takes `cost` tokens if the bucket holds them; returns whether it did. */
  take(cost = 1): boolean {
    if (this.unlimited) return true;
    this.#refill();
    if (this.#tokens < cost) return false;
    this.#tokens -= cost;
    return true;
  }

  /** Milliseconds until `cost` tokens will be there (0 if they are now). */
  waitMs(cost = 1): number {
    if (this.unlimited) return 0;
    this.#refill();
    const short = cost - this.#tokens;
    return short <= 0 ? 0 : Math.ceil((short * 1000) / this.#rate.perSecond);
  }

  /** True when the bucket is full again (a keyed map may forget it). */
  get full(): boolean {
    return this.tokens >= this.#rate.burst;
  }

  #refill(): void {
    const now = this.#now();
    const dt = now - this.#at;
    if (dt <= 0) return;
    this.#at = now;
    this.#tokens = Math.min(this.#rate.burst, this.#tokens + (dt * this.#rate.perSecond) / 1000);
  }
}

/**
 * Log lines limited per key (a peer, a connection): `burst` lines at once, then
 * `perSecond`. A line that is let through after others were held back carries how many
 * were suppressed, so nothing disappears without a trace. Forget a key when its peer
 * leaves; keys whose bucket is full again are swept when the map grows past `maxKeys`, and
 * the oldest key goes when none is.
 */
export class LogLimiter<K = string> {
  readonly #now: () => number;
  readonly #rate: Rate;
  readonly #maxKeys: number;
  readonly #keys = new Map<K, { bucket: TokenBucket; suppressed: number }>();

  constructor(now: () => number, rate: Rate = { perSecond: 1, burst: 5 }, maxKeys = 10_000) {
    this.#now = now;
    this.#rate = rate;
    this.#maxKeys = maxKeys;
  }

  get size(): number {
    return this.#keys.size;
  }

  /**
   * Whether to write a line for `key`: `undefined` means hold it back; a number means
   * write it, and is how many lines for the key were held back since the last one.
   */
  allow(key: K): number | undefined {
    let k = this.#keys.get(key);
    if (!k) {
      if (this.#keys.size >= this.#maxKeys) this.#sweep();
      k = { bucket: new TokenBucket(this.#now, this.#rate), suppressed: 0 };
      this.#keys.set(key, k);
    }
    if (!k.bucket.take()) {
      k.suppressed++;
      return undefined;
    }
    const held = k.suppressed;
    k.suppressed = 0;
    return held;
  }

  forget(key: K): void {
    this.#keys.delete(key);
  }

  #sweep(): void {
    for (const [key, k] of this.#keys) if (k.suppressed === 0 && k.bucket.full) this.#keys.delete(key);
    // Every key still active (many addresses at once): forget the oldest, so the map stays bounded.
    if (this.#keys.size >= this.#maxKeys) {
      const oldest = this.#keys.keys().next();
      if (!oldest.done) this.#keys.delete(oldest.value);
    }
  }
}
