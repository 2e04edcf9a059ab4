import type { Logger } from 'pino';
import { LogLimiter } from '../core/ratelimit.js';
import { IpRateLimiter } from './ip-limit.js';

/** Warn lines about failed admin tokens, over all addresses, per minute. */
export const AUTH_FAILURE_LOG_LINES_PER_MINUTE = 10;

const BUCKET = 'admin-auth';

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
 * minute over all addresses (the core LogLimiter); the next line logged says how many
 * were held back. The token is never logged. Time comes from the injected clock.
 */
export class AdminAuthGuard {
  readonly #limit: () => number;
  readonly #logger: Logger;
  readonly #windows: IpRateLimiter;
  /** One budget for every address: a brute force from many addresses floods no log. */
  readonly #lines: LogLimiter;

  constructor(opts: { now: () => number; failuresPerMinute: () => number; logger: Logger }) {
    this.#limit = opts.failuresPerMinute;
    this.#logger = opts.logger;
    this.#windows = new IpRateLimiter(opts.now);
    this.#lines = new LogLimiter(opts.now, { perSecond: AUTH_FAILURE_LOG_LINES_PER_MINUTE / 60, burst: AUTH_FAILURE_LOG_LINES_PER_MINUTE });
  }

  /** Milliseconds until `ip` may try a token again; 0 if it may now. */
  retryAfter(ip: string): number {
    return this.#windows.peek(BUCKET, ip, this.#limit());
  }

  /** Counts and (within the log budget) logs one failed attempt. */
  failed(f: AuthFailure): void {
    this.#windows.take(BUCKET, f.ip, this.#limit());
    const suppressed = this.#lines.allow('admin');
    if (suppressed === undefined) return;
    const blocked = this.retryAfter(f.ip) > 0;
    this.#logger.warn(
      { event: 'admin.auth_failed', remote: f.ip, method: f.method, route: f.route, reason: f.reason, blocked, ...(suppressed > 0 ? { suppressed } : {}) },
      blocked ? 'admin API: authentication failed; this address is blocked for the rest of the minute' : 'admin API: authentication failed',
    );
  }

  /** Addresses with failures in the current window (for tests). */
  get size(): number {
    return this.#windows.size;
  }
}
