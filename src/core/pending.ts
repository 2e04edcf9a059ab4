import { MusterError } from './errors.js';
import type { Scheduler, Timer } from './scheduler.js';

/**
 * Requests waiting for an answer, each with a deadline. When the deadline passes the
 * entry is removed and `onExpire` runs; when the session is lost, the owner takes its
 * entries (`takeWhere`, `clear`) and fails each with a typed error.
 */
export interface PendingEntry<T> {
  readonly key: string;
  readonly data: T;
  readonly startedAt: number;
}

interface Slot<T> extends PendingEntry<T> {
  timer: Timer;
}

export class PendingRequests<T> {
  readonly #map = new Map<string, Slot<T>>();
  readonly #scheduler: Scheduler;
  readonly #onExpire: (entry: PendingEntry<T>) => void;

  constructor(scheduler: Scheduler, onExpire: (entry: PendingEntry<T>) => void) {
    this.#scheduler = scheduler;
    this.#onExpire = onExpire;
  }

  get size(): number {
    return this.#map.size;
  }

  has(key: string): boolean {
    return this.#map.has(key);
  }

  get(key: string): PendingEntry<T> | undefined {
    return this.#map.get(key);
  }

  /** Adds a request. Throws DUPLICATE_REQUEST if the key is already pending. */
  add(key: string, timeoutMs: number, data: T): PendingEntry<T> {
    if (this.#map.has(key)) throw new MusterError('DUPLICATE_REQUEST', key);
    const slot: Slot<T> = {
      key,
      data,
      startedAt: this.#scheduler.now(),
      timer: this.#scheduler.after(timeoutMs, () => {
        if (this.#map.get(key) !== slot) return;
        this.#map.delete(key);
        this.#onExpire(slot);
      }),
    };
    this.#map.set(key, slot);
    return slot;
  }

  /** Removes and returns the entry; its deadline is cancelled. */
  take(key: string): PendingEntry<T> | undefined {
    const slot = this.#map.get(key);
    if (!slot) return undefined;
    slot.timer.cancel();
    this.#map.delete(key);
    return slot;
  }

  /** Removes every entry for which `match` is true, and returns them. */
  takeWhere(match: (entry: PendingEntry<T>) => boolean): PendingEntry<T>[] {
    const out: PendingEntry<T>[] = [];
    for (const slot of this.#map.values()) {
      if (match(slot)) {
        slot.timer.cancel();
        this.#map.delete(slot.key);
        out.push(slot);
      }
    }
    return out;
  }

  values(): IterableIterator<PendingEntry<T>> {
    return this.#map.values();
  }

  clear(): PendingEntry<T>[] {
    return this.takeWhere(() => true);
  }
}
