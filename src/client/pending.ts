import type { ClientClock } from './clock.js';

/**
 * The one request-waiter map of the clients: a request waits under a key until its
 * answer settles it, its deadline passes (the client's own typed timeout error), or the
 * connection ends (`failAll`). Every path out clears the deadline.
 */
interface Entry<T> {
  resolve: (value: T) => void;
  reject: (err: Error) => void;
  cancel: () => void;
}

export class PendingRequests<K, T = unknown> {
  readonly #clock: ClientClock;
  readonly #entries = new Map<K, Entry<T>>();

  constructor(clock: ClientClock) {
    this.#clock = clock;
  }

  get size(): number {
    return this.#entries.size;
  }

  has(key: K): boolean {
    return this.#entries.has(key);
  }

  keys(): IterableIterator<K> {
    return this.#entries.keys();
  }

  /** Waits for `key`'s answer; after `timeoutMs` rejects with `onTimeout()`. A key already waiting is replaced (and rejected as timed out). */
  wait(key: K, timeoutMs: number, onTimeout: () => Error): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.take(key)?.reject(onTimeout());
      const cancel = this.#clock.wake(timeoutMs, () => this.take(key)?.reject(onTimeout()));
      this.#entries.set(key, { resolve, reject, cancel });
    });
  }

  /** Removes `key` and stops its deadline; the caller settles it. */
  take(key: K): Pick<Entry<T>, 'resolve' | 'reject'> | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    this.#entries.delete(key);
    e.cancel();
    return e;
  }

  resolve(key: K, value: T): boolean {
    const e = this.take(key);
    e?.resolve(value);
    return e !== undefined;
  }

  reject(key: K, err: Error): boolean {
    const e = this.take(key);
    e?.reject(err);
    return e !== undefined;
  }

  /** The first waiting key that `match` accepts (for dialects that answer without an id). */
  find(match: (key: K) => boolean): K | undefined {
    for (const k of this.#entries.keys()) if (match(k)) return k;
    return undefined;
  }

  /** Rejects every waiting request with `err` (the connection or session ended). */
  failAll(err: Error): void {
    for (const key of [...this.#entries.keys()]) this.reject(key, err);
  }
}
