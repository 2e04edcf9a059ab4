/** Reconnect delays: exponential, capped, with full jitter so a fleet does not reconnect in lockstep. */
export interface BackoffOptions {
  /** First delay's upper bound, ms (default 250). */
  minMs?: number;
  /** Cap, ms (default 30000). */
  maxMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Source of randomness in [0, 1) (default Math.random), injectable for tests. */
  random?: () => number;
}

export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const min = opts.minMs ?? 250;
  const max = opts.maxMs ?? 30_000;
  const factor = opts.factor ?? 2;
  const random = opts.random ?? Math.random;
  const ceiling = Math.min(max, min * factor ** Math.max(0, attempt));
  // Full jitter, but never below a tenth of the ceiling so retries don't hammer.
  return Math.round(ceiling * (0.1 + 0.9 * random()));
}
