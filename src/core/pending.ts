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

/**
 * Pending requests that all share one timeout, for a hot path: deadlines then come in
 * the order the entries were added, so the entries live in one insertion-ordered Map
 * and a single scheduler timer waits for the oldest one. `add` and `take` are a Map
 * set and delete, with no timer, closure or heap entry per request (PendingRequests
 * makes one of each). Expiry is exact: the timer fires at the oldest live entry's
 * deadline; when that entry was taken in the meantime, it re-arms for the next one.
 * Assumes the clock does not run backwards (an entry added after a backward step
 * expires no earlier than the entry before it).
 */
export class FifoPending<T> {
  readonly #map = new Map<string, FifoSlot<T>>();
  readonly #scheduler: Scheduler;
  readonly #timeoutMs: number;
  readonly #onExpire: (entry: PendingEntry<T>) => void;
  readonly #wake = (): void => this.#fire();
  #timer: Timer | undefined;
  /** True while expired entries are handed out (the timer is re-armed after them). */
  #firing = false;

  constructor(scheduler: Scheduler, timeoutMs: number, onExpire: (entry: PendingEntry<T>) => void) {
    this.#scheduler = scheduler;
    this.#timeoutMs = Math.max(0, timeoutMs);
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

  /** Adds a request, due `timeoutMs` from now. Throws DUPLICATE_REQUEST if the key is already pending. */
  add(key: string, data: T): PendingEntry<T> {
    if (this.#map.has(key)) throw new MusterError('DUPLICATE_REQUEST', key);
    const startedAt = this.#scheduler.now();
    const slot: FifoSlot<T> = { key, data, startedAt, deadline: startedAt + this.#timeoutMs };
    this.#map.set(key, slot);
    if (this.#timer === undefined && !this.#firing) this.#arm(slot.deadline);
    return slot;
  }

  /** Removes and returns the entry; it will not expire. */
  take(key: string): PendingEntry<T> | undefined {
    const slot = this.#map.get(key);
    if (!slot) return undefined;
    this.#map.delete(key);
    if (this.#map.size === 0) this.#disarm();
    return slot;
  }

  /** Removes every entry for which `match` is true, and returns them. */
  takeWhere(match: (entry: PendingEntry<T>) => boolean): PendingEntry<T>[] {
    const out: PendingEntry<T>[] = [];
    for (const slot of this.#map.values()) {
      if (match(slot)) {
        this.#map.delete(slot.key);
        out.push(slot);
      }
    }
    if (this.#map.size === 0) this.#disarm();
    return out;
  }

  values(): IterableIterator<PendingEntry<T>> {
    return this.#map.values();
  }

  clear(): PendingEntry<T>[] {
    return this.takeWhere(() => true);
  }

  #arm(at: number): void {
    this.#timer = this.#scheduler.after(at - this.#scheduler.now(), this.#wake);
  }

  #disarm(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  #fire(): void {
    this.#timer = undefined;
    const now = this.#scheduler.now();
    this.#firing = true;
    try {
      for (const slot of this.#map.values()) {
        if (slot.deadline > now) break;
        this.#map.delete(slot.key);
        this.#onExpire(slot);
      }
    } finally {
      this.#firing = false;
      // The oldest entry left (onExpire may have taken or added some).
      const first = this.#map.values().next();
      if (!first.done && this.#timer === undefined) this.#arm(first.value.deadline);
    }
  }
}

interface FifoSlot<T> extends PendingEntry<T> {
  readonly deadline: number;
}
