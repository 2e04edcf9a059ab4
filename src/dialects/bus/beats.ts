import type { Service } from './world-state.js';

/**
 * Identified services' next heartbeat, in tick order. Every service has the same
 * interval, so a service that ticks goes to the back: a queue (two arrays, the times
 * unboxed), not a Map re-keyed on every tick, whose deleted entries kept its table up to
 * twice the size (about 100 bytes per idle connection at 19,000). A service that stops
 * being identified is not looked for: its entry is dropped when it reaches the front.
 */
export class BeatQueue {
  #svcs: Service[] = [];
  #ats: number[] = [];
  #head = 0;

  /** Queues `svc`'s next tick at `at`. */
  push(svc: Service, at: number): void {
    this.#svcs.push(svc);
    this.#ats.push(at);
  }

  /** When the first live entry is due (entries of services no longer identified are dropped); undefined: none. */
  nextAt(): number | undefined {
    while (this.#head < this.#svcs.length) {
      const svc = this.#svcs[this.#head] as Service;
      if (live(svc)) return this.#ats[this.#head];
      this.#drop();
    }
    return undefined;
  }

  /** Takes the first entry (call after `nextAt` returned its time). */
  shift(): Service {
    const svc = this.#svcs[this.#head] as Service;
    this.#drop();
    return svc;
  }

  /** Live and stale entries queued (for tests). */
  get length(): number {
    return this.#svcs.length - this.#head;
  }

  #drop(): void {
    this.#svcs[this.#head] = undefined as unknown as Service;
    this.#head++;
    if (this.#head === this.#svcs.length) {
      this.#svcs = [];
      this.#ats = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#svcs.length) {
      this.#svcs = this.#svcs.slice(this.#head);
      this.#ats = this.#ats.slice(this.#head);
      this.#head = 0;
    }
  }
}

/** A queued service still ticks while it is identified here (unregistering clears `identified`; it never comes back). */
function live(svc: Service): boolean {
  return svc.identified && svc.instance === undefined;
}
