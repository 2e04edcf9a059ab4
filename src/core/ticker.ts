import type { Scheduler, Timer } from './scheduler.js';

/**
 * Many members that each tick every `periodMs`, first `periodMs` after they were added
 * (a heartbeat per connection), for one scheduler timer in all: members wait in an
 * insertion-ordered Map, which with one period is the order of their next ticks. A
 * member that ticks moves to the end with its next tick `periodMs` later (or, when the
 * timer ran so late that this is already past, `periodMs` from now), as
 * `Scheduler.every` does. Compared with one `every` per member, no timer, closure or
 * heap entry per member.
 *
 * Ticks are exact on a clock without lateness (ManualClock). When a wake-up is late, a
 * member whose next tick falls before that of a member added during the lateness ticks
 * when that one does (late by at most the lateness, as with a late timer).
 */
export class Ticker<T> {
  readonly #members = new Map<T, { at: number }>();
  readonly #scheduler: Scheduler;
  readonly #period: number;
  readonly #tick: (member: T, now: number) => void;
  readonly #wake = (): void => this.#fire();
  #timer: Timer | undefined;
  #firing = false;

  constructor(scheduler: Scheduler, periodMs: number, tick: (member: T, now: number) => void) {
    if (!(periodMs > 0)) throw new RangeError('period must be positive');
    this.#scheduler = scheduler;
    this.#period = periodMs;
    this.#tick = tick;
  }

  get size(): number {
    return this.#members.size;
  }

  has(member: T): boolean {
    return this.#members.has(member);
  }

  /** Starts ticking `member`, first `periodMs` from now (added again: starts over). */
  add(member: T): void {
    this.#members.delete(member);
    const at = this.#scheduler.now() + this.#period;
    this.#members.set(member, { at });
    if (this.#timer === undefined && !this.#firing) this.#arm(at);
  }

  /** Stops ticking `member`. */
  delete(member: T): void {
    if (!this.#members.delete(member)) return;
    if (this.#members.size === 0) {
      this.#timer?.cancel();
      this.#timer = undefined;
    }
  }

  #arm(at: number): void {
    this.#timer = this.#scheduler.after(at - this.#scheduler.now(), this.#wake);
  }

  #fire(): void {
    this.#timer = undefined;
    const now = this.#scheduler.now();
    this.#firing = true;
    try {
      for (;;) {
        const first = this.#members.entries().next();
        if (first.done) break;
        const [member, slot] = first.value;
        if (slot.at > now) break;
        // To the end, with its next tick.
        this.#members.delete(member);
        slot.at += this.#period;
        if (slot.at <= now) slot.at = now + this.#period;
        this.#members.set(member, slot);
        this.#tick(member, now);
      }
    } finally {
      this.#firing = false;
      const first = this.#members.values().next();
      if (!first.done && this.#timer === undefined) this.#arm(first.value.at);
    }
  }
}
