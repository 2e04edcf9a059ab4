/**
 * Tells when connections arrive in a burst: at least `perSecond` of them within one
 * second. Pure: the caller passes the time, counts each new connection with
 * `connect()`, and while a burst is on calls `check()` once a second.
 *
 * The server holds V8's young generation at its size from the start of a burst
 * (server.ts, young-gen.ts), as it does during start-up, and for the same reason: what
 * a burst allocates and keeps is the new connections' state, which lives as long as
 * they do and ends in the old generation anyway. Left to itself, V8 grows the young
 * generation to its 32 MiB maximum while thousands connect (the survivors of each
 * collection add up), and again under the heartbeats of the fleet that has connected,
 * and those pages stay resident for the life of an idle fleet: about 1.7 KiB more per
 * connection at 19,000 (bench P3). After the burst the hold lasts until traffic keeps
 * the young generation busy (young-gen.ts), so a busy server gets its large young
 * generation back (capping it for good halved the fan-out throughput in bench P2).
 */
export const BURST_CONNECTS_PER_SECOND = 100;

export class ConnectBurst {
  readonly perSecond: number;
  #windowStart = Number.NEGATIVE_INFINITY;
  #inWindow = 0;
  #sinceCheck = 0;
  #on = false;

  constructor(perSecond = BURST_CONNECTS_PER_SECOND) {
    this.perSecond = perSecond;
  }

  /** Whether a burst is on. */
  get on(): boolean {
    return this.#on;
  }

  /** Counts one new connection; true when it starts a burst. */
  connect(now: number): boolean {
    if (this.#on) {
      this.#sinceCheck++;
      return false;
    }
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    if (++this.#inWindow < this.perSecond) return false;
    this.#on = true;
    this.#sinceCheck = 0;
    return true;
  }

  /**
   * Once a second during a burst: true when it is over (fewer than `perSecond`
   * connections since the last check), false while it goes on.
   */
  check(): boolean {
    if (!this.#on) return false;
    if (this.#sinceCheck >= this.perSecond) {
      this.#sinceCheck = 0;
      return false;
    }
    this.#on = false;
    this.#windowStart = Number.NEGATIVE_INFINITY;
    return true;
  }
}
