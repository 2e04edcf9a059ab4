/**
 * Time is injected. Logic never calls Date.now() or setTimeout() directly: it asks a
 * Clock. SystemClock is the real one; ManualClock lets tests move time by hand.
 */
export type Cancel = () => void;

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `cb` once, `ms` from now. */
  wake(ms: number, cb: () => void): Cancel;
}

const MAX_TIMEOUT = 2 ** 31 - 1;

export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
  wake(ms: number, cb: () => void): Cancel {
    const t = setTimeout(cb, Math.min(Math.max(0, ms), MAX_TIMEOUT));
    t.unref();
    return () => clearTimeout(t);
  }
}

interface ManualWake {
  at: number;
  seq: number;
  cb: () => void;
  live: boolean;
}

/** A clock that only moves when told to. Due callbacks run in order of their due time. */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #wakes: ManualWake[] = [];

  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  wake(ms: number, cb: () => void): Cancel {
    const w: ManualWake = { at: this.#now + Math.max(0, ms), seq: this.#seq++, cb, live: true };
    this.#wakes.push(w);
    return () => {
      w.live = false;
    };
  }
  /** Moves time forward by `ms`, running every callback that falls due on the way. */
  advance(ms: number): void {
    const target = this.#now + ms;
    for (;;) {
      this.#wakes = this.#wakes.filter((w) => w.live);
      let next: ManualWake | undefined;
      for (const w of this.#wakes) {
        if (w.at <= target && (!next || w.at < next.at || (w.at === next.at && w.seq < next.seq))) next = w;
      }
      if (!next) break;
      next.live = false;
      this.#now = Math.max(this.#now, next.at);
      next.cb();
    }
    this.#now = target;
  }
  /** How many wake-ups are pending (for leak checks). */
  get pending(): number {
    return this.#wakes.filter((w) => w.live).length;
  }
}
