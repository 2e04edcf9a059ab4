/**
 * A leader lease on Redis, with a fencing token: of the instances that run one for the
 * same namespace, at most one holds it at a time. The holder writes the namespace with
 * `store.fencedSet(ns, key, value, token)`, which Redis refuses as soon as a newer
 * holder has taken a newer token, so a leader that was paused (GC, SIGSTOP, a slow
 * disk) past its lease cannot overwrite its successor.
 *
 * - Acquire: the lease key is set like `SET key "<token>:<instance>" NX PX leaseMs`, the
 *   token coming from INCR on the namespace's fence, in one script (redis-scripts.ts).
 * - Renew every `renewEveryMs` (leaseMs / 3 by default), only while the key still holds
 *   our value (compare and PEXPIRE); release on stop, only if ours (compare and DEL).
 * - A holder counts itself leader until `sent + leaseMs - marginMs`, where `sent` is
 *   when its last successful acquire or renew was sent: it stops before Redis lets the
 *   key expire, by the margin, which covers clock-rate differences between the two. A
 *   renew that finds the key gone or someone else's deposes at once.
 *
 * The schedule runs on the injected Clock; the lease's expiry itself is Redis' (PX), the
 * one clock all instances share.
 */
import type { Cancel, Clock } from '../core/clock.js';
import type { Leadership } from './leadership.js';
import type { RedisStore } from '../store/redis.js';
import { LEASE_ACQUIRE, LEASE_RELEASE, LEASE_RENEW } from '../store/redis-scripts.js';

/** How long `stop()` waits for Redis to take the lease back; past it the lease simply runs out. */
const STOP_RELEASE_WAIT_MS = 1_000;

export interface LeaseOptions {
  /** The Redis store: the lease runs on its connection and key layout. */
  store: Pick<RedisStore, 'client' | 'keys'>;
  /** The namespace the lease guards; its fence is what fencedSet checks. */
  ns: string;
  instanceId: string;
  clock: Clock;
  /** How long the lease lasts in Redis after each acquire or renew. Default 10 s. */
  leaseMs?: number;
  /** How often the holder renews. Default leaseMs / 3. */
  renewEveryMs?: number;
  /**
   * How often an instance that does not hold it tries to take it. Default min(renewEveryMs,
   * 500). A try that finds the holder's lease running out sooner retries just after its end.
   */
  retryEveryMs?: number;
  /** How long before the lease's end in Redis the holder stops counting itself leader. Default leaseMs / 5. */
  marginMs?: number;
  onElected?: (token: number) => void;
  onDeposed?: () => void;
  /** A Redis command of the lease failed (it keeps trying). */
  onError?: (err: Error) => void;
}

export interface LeaseState {
  leader: boolean;
  /** The fencing token while leader. */
  token: number | undefined;
}

export class RedisLease implements Leadership {
  readonly leaseMs: number;
  readonly renewEveryMs: number;
  readonly retryEveryMs: number;
  readonly #listeners = new Set<(isLeader: boolean, token: number | undefined) => void>();
  readonly marginMs: number;
  readonly #o: LeaseOptions;
  readonly #leaseKey: string;
  readonly #fenceKey: string;
  /** Our value in the lease key while we hold it. */
  #value: string | undefined;
  #token: number | undefined;
  #validUntil = 0;
  #running = false;
  #tick: Cancel | undefined;
  #deadline: Cancel | undefined;
  #inflight: Promise<void> = Promise.resolve();
  /** After a failed acquire: when to try next (the holder's lease may run out before retryEveryMs). */
  #retryInMs: number | undefined;

  constructor(opts: LeaseOptions) {
    this.#o = opts;
    this.leaseMs = opts.leaseMs ?? 10_000;
    this.renewEveryMs = opts.renewEveryMs ?? Math.floor(this.leaseMs / 3);
    this.marginMs = opts.marginMs ?? Math.floor(this.leaseMs / 5);
    this.retryEveryMs = opts.retryEveryMs ?? Math.min(this.renewEveryMs, 500);
    if (!(this.leaseMs > 0) || !(this.renewEveryMs > 0) || !(this.marginMs >= 0) || this.renewEveryMs + this.marginMs >= this.leaseMs) {
      throw new RangeError(`a lease needs 0 < renewEveryMs + marginMs < leaseMs (got ${this.renewEveryMs} + ${this.marginMs}, ${this.leaseMs})`);
    }
    this.#leaseKey = opts.store.keys.lease(opts.ns);
    this.#fenceKey = opts.store.keys.fence(opts.ns);
  }

  get state(): LeaseState {
    return { leader: this.#value !== undefined, token: this.#token };
  }

  get leader(): boolean {
    return this.#value !== undefined;
  }

  /** Leadership: the same as `leader`. */
  get isLeader(): boolean {
    return this.#value !== undefined;
  }

  get token(): number | undefined {
    return this.#token;
  }

  onChange(cb: (isLeader: boolean, token: number | undefined) => void): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  /** Starts trying to take the lease at once; resolves when that first attempt is over. */
  start(): Promise<void> {
    if (!this.#running) {
      this.#running = true;
      this.#attempt();
    }
    return this.#inflight;
  }

  /** Resolves when the attempt under way (if any) is over: for tests that move the clock. */
  idle(): Promise<void> {
    return this.#inflight;
  }

  /** Stops trying, and gives the lease up if we hold it (onDeposed is called then). */
  async stop(): Promise<void> {
    this.#running = false;
    this.#tick?.();
    this.#tick = undefined;
    // An attempt under way is not waited for: with Redis away it may never answer, and
    // an acquire that lands after this gives the lease back itself (see #acquire).
    const value = this.#value;
    this.#depose();
    if (value === undefined) return;
    let timer: Cancel | undefined;
    const bounded = new Promise<void>((resolve) => {
      timer = this.#o.clock.wake(STOP_RELEASE_WAIT_MS, resolve);
    });
    const release = this.#o.store.client.eval(LEASE_RELEASE, 1, this.#leaseKey, value).then(
      () => undefined,
      (err: unknown) => this.#o.onError?.(err as Error),
    );
    await Promise.race([release, bounded]);
    timer?.();
  }

  #attempt(): void {
    this.#tick = undefined;
    if (!this.#running) return;
    const sent = this.#o.clock.now();
    const run = this.#value === undefined ? this.#acquire(sent) : this.#renew(this.#value, sent);
    this.#inflight = run
      .catch((err: unknown) => this.#o.onError?.(err as Error))
      .finally(() => {
        const retryIn = this.#retryInMs ?? this.retryEveryMs;
        this.#retryInMs = undefined;
        if (this.#running) this.#tick = this.#o.clock.wake(this.#value !== undefined ? this.renewEveryMs : retryIn, () => this.#attempt());
      });
  }

  async #acquire(sent: number): Promise<void> {
    const value = (await this.#o.store.client.eval(LEASE_ACQUIRE, 2, this.#leaseKey, this.#fenceKey, this.#o.instanceId, this.leaseMs)) as string | number;
    if (typeof value === 'number') {
      // Someone else holds it, for `value` more ms in Redis: try again as it runs out (a dead
      // holder's successor takes over at its lease's end, not up to retryEveryMs later).
      if (value >= 0) this.#retryInMs = Math.max(1, Math.min(this.retryEveryMs, value + 1));
      return;
    }
    if (!this.#running) {
      // Stopped while the attempt was under way: give back what we just took.
      await this.#o.store.client.eval(LEASE_RELEASE, 1, this.#leaseKey, value);
      return;
    }
    this.#value = value;
    this.#token = Number(value.slice(0, value.indexOf(':')));
    this.#extend(sent);
    this.#o.onElected?.(this.#token);
    for (const cb of [...this.#listeners]) cb(true, this.#token);
  }

  async #renew(value: string, sent: number): Promise<void> {
    const ok = (await this.#o.store.client.eval(LEASE_RENEW, 1, this.#leaseKey, value, this.leaseMs)) === 1;
    if (this.#value !== value) return; // deposed by the deadline meanwhile
    if (ok) this.#extend(sent);
    else this.#depose();
  }

  /** We hold the lease until `sent + leaseMs` in Redis; we count ourselves leader until the margin before. */
  #extend(sent: number): void {
    this.#validUntil = sent + this.leaseMs - this.marginMs;
    this.#deadline?.();
    this.#deadline = this.#o.clock.wake(this.#validUntil - this.#o.clock.now(), () => {
      this.#deadline = undefined;
      if (this.#value !== undefined && this.#o.clock.now() >= this.#validUntil) this.#depose();
    });
  }

  #depose(): void {
    this.#deadline?.();
    this.#deadline = undefined;
    if (this.#value === undefined) return;
    this.#value = undefined;
    this.#token = undefined;
    this.#o.onDeposed?.();
    for (const cb of [...this.#listeners]) cb(false, undefined);
  }
}
