import type { Logger } from 'pino';

/** Warn lines about failed admin tokens, over all addresses, per minute. */
export const AUTH_FAILURE_LOG_LINES_PER_MINUTE = 10;

const WINDOW_MS = 60_000;

export interface AuthFailure {
  ip: string;
  method: string;
  /** The route pattern, not the URL (a URL may carry anything a client typed). */
  route: string;
  reason: 'missing' | 'wrong';
}

/**
 * Guards the admin token against guessing. Failed attempts are counted per IP in a
 * fixed one-minute window; once an IP reaches the limit, every admin request from it
 * is answered 429 (with Retry-After) until the window ends, without its token being
 * looked at, so a right guess cannot be told from a wrong one while blocked.
 *
 * Failures are logged at warn, at most AUTH_FAILURE_LOG_LINES_PER_MINUTE lines a
 * minute over all addresses; the next line logged says how many were held back. The
 * token is never logged. Time comes from the injected clock.
 */
export class AdminAuthGuard {
  readonly #now: () => number;
  readonly #limit: () => number;
  readonly #logger: Logger;
  readonly #failures = new Map<string, { start: number; count: number }>();
  #lastSweep = 0;
  #logWindowStart = Number.NEGATIVE_INFINITY;
  #logLines = 0;
  #suppressed = 0;

  constructor(opts: { now: () => number; failuresPerMinute: () => number; logger: Logger }) {
    this.#now = opts.now;
    this.#limit = opts.failuresPerMinute;
    this.#logger = opts.logger;
  }

  /** Milliseconds until `ip` may try a token again; 0 if it may now. */
  retryAfter(ip: string): number {
    const now = this.#now();
    const w = this.#failures.get(ip);
    if (!w || now - w.start >= WINDOW_MS || w.count < this.#limit()) return 0;
    return w.start + WINDOW_MS - now;
  }

  /** Counts and (within the log budget) logs one failed attempt. */
  failed(f: AuthFailure): void {
    const now = this.#now();
    if (now - this.#lastSweep >= WINDOW_MS) {
      this.#lastSweep = now;
      for (const [ip, w] of this.#failures) if (now - w.start >= WINDOW_MS) this.#failures.delete(ip);
    }
    let w = this.#failures.get(f.ip);
    if (!w || now - w.start >= WINDOW_MS) {
      w = { start: now, count: 0 };
      this.#failures.set(f.ip, w);
    }
    w.count++;

    if (now - this.#logWindowStart >= WINDOW_MS) {
      this.#logWindowStart = now;
      this.#logLines = 0;
    }
    if (this.#logLines >= AUTH_FAILURE_LOG_LINES_PER_MINUTE) {
      this.#suppressed++;
      return;
    }
    this.#logLines++;
    const blocked = w.count >= this.#limit();
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    this.#logger.warn(
      { event: 'admin.auth_failed', remote: f.ip, method: f.method, route: f.route, reason: f.reason, failuresThisMinute: w.count, blocked, ...(suppressed > 0 ? { suppressed } : {}) },
      blocked ? 'admin API: authentication failed; this address is blocked for the rest of the minute' : 'admin API: authentication failed',
    );
  }

  /** Addresses with failures in the current window (for tests). */
  get size(): number {
    return this.#failures.size;
  }
}
