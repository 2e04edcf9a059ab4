import type { Cancel, Clock } from './clock.js';

/**
 * One scheduler for every deadline in the process: handshake timeouts, heartbeat
 * deadlines, resume windows, TTLs. It keeps a binary heap of deadlines and arms a
 * single clock wake-up for the earliest, so 20,000 connections cost one OS timer.
 */
export interface Timer {
  cancel(): void;
  readonly active: boolean;
}

class Entry implements Timer {
  active = true;
  constructor(
    public at: number,
    public readonly seq: number,
    public fn: () => void,
    public readonly period: number,
  ) {}
  cancel(): void {
    this.active = false;
  }
}

export class Scheduler {
  readonly clock: Clock;
  #heap: Entry[] = [];
  #seq = 0;
  #armedAt = Infinity;
  #cancelWake: Cancel | undefined;
  #onError: (err: unknown) => void;

  constructor(clock: Clock, onError: (err: unknown) => void = (err) => queueMicrotask(() => { throw err; })) {
    this.clock = clock;
    this.#onError = onError;
  }

  now(): number {
    return this.clock.now();
  }

  /** Runs `fn` once, `ms` from now. */
  after(ms: number, fn: () => void): Timer {
    return this.#push(this.clock.now() + Math.max(0, ms), fn, 0);
  }

  /** Runs `fn` every `ms`, first `ms` from now, until cancelled. */
  every(ms: number, fn: () => void): Timer {
    if (!(ms > 0)) throw new RangeError('interval must be positive');
    return this.#push(this.clock.now() + ms, fn, ms);
  }

  /** Number of live (not cancelled, not yet fired) timers. */
  get size(): number {
    let n = 0;
    for (const e of this.#heap) if (e.active) n++;
    return n;
  }

  /** Cancels everything (used at shutdown). */
  clear(): void {
    for (const e of this.#heap) e.active = false;
    this.#heap = [];
    this.#cancelWake?.();
    this.#cancelWake = undefined;
    this.#armedAt = Infinity;
  }

  #push(at: number, fn: () => void, period: number): Entry {
    const e = new Entry(at, this.#seq++, fn, period);
    this.#insert(e);
    this.#arm();
    return e;
  }

  #insert(e: Entry): void {
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p] as Entry;
      if (less(parent, e)) break;
      h[i] = parent;
      i = p;
    }
    h[i] = e;
  }

  #pop(): Entry | undefined {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        let best = last;
        const le = h[l];
        const re = h[r];
        if (le && less(le, best)) { m = l; best = le; }
        if (re && less(re, best)) { m = r; best = re; }
        if (m === i) break;
        h[i] = best;
        i = m;
      }
      h[i] = last;
    }
    return top;
  }

  #arm(): void {
    // Drop cancelled entries from the top so we never wake for nothing.
    while (this.#heap.length > 0 && !(this.#heap[0] as Entry).active) this.#pop();
    const top = this.#heap[0];
    const at = top ? top.at : Infinity;
    // Re-arm only when the earliest deadline moved earlier, or nothing is left. When it
    // moved later (the earliest timer was cancelled, as every answered request's is),
    // the wake-up already armed fires a little early, finds nothing due and re-arms
    // then. Re-arming on every such change cost a clearTimeout + setTimeout per request
    // (bench P1 profile); this way it is about one per timeout period.
    if (at === this.#armedAt || (at > this.#armedAt && at !== Infinity)) return;
    this.#cancelWake?.();
    this.#cancelWake = undefined;
    this.#armedAt = at;
    if (at !== Infinity) {
      this.#cancelWake = this.clock.wake(at - this.clock.now(), () => this.#fire());
    }
  }

  #fire(): void {
    this.#armedAt = Infinity;
    this.#cancelWake = undefined;
    const now = this.clock.now();
    for (;;) {
      const top = this.#heap[0];
      if (!top || top.at > now) break;
      this.#pop();
      if (!top.active) continue;
      if (top.period > 0) {
        top.at += top.period;
        if (top.at <= now) top.at = now + top.period;
        this.#insert(top);
      } else {
        top.active = false;
      }
      try {
        top.fn();
      } catch (err) {
        this.#onError(err);
      }
    }
    this.#arm();
  }
}

function less(a: Entry, b: Entry): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
