/**
 * The fleet-wide identify queue, as pure functions over plain data.
 *
 * Discord lets `maxConcurrency` shards identify per window (5 s), one per bucket,
 * where the bucket is `shard_id % maxConcurrency`. So: one grant per bucket per
 * `identifyWindow`. A daily budget of session starts (`sessionStartLimit`) is kept
 * too; once it is spent, nothing more is granted until the budget period (24 h from
 * the first grant of the period) has passed. Requests wait in FIFO order.
 */

export const BUDGET_PERIOD_MS = 24 * 60 * 60 * 1000;

export interface QueueConfig {
  readonly maxConcurrency: number;
  readonly identifyWindow: number;
  readonly sessionStartLimit: number;
  readonly budgetPeriod?: number;
}

export interface Request {
  readonly shard: number;
  readonly control: string;
}

export interface Budget {
  /** Start of the current budget period (the first grant after a reset), or null. */
  readonly windowStart: number | null;
  readonly used: number;
}

export interface QueueState {
  /** Per bucket, when it last granted (null: never). */
  readonly lastGrant: readonly (number | null)[];
  readonly budget: Budget;
  readonly waiting: readonly Request[];
}

export function emptyQueue(maxConcurrency: number): QueueState {
  return { lastGrant: Array.from({ length: maxConcurrency }, () => null), budget: { windowStart: null, used: 0 }, waiting: [] };
}

export const bucketOf = (shard: number, maxConcurrency: number): number => shard % maxConcurrency;

function period(cfg: QueueConfig): number {
  return cfg.budgetPeriod ?? BUDGET_PERIOD_MS;
}

/** The budget as of `now` (a period that has passed starts afresh). */
export function currentBudget(b: Budget, now: number, cfg: QueueConfig): Budget {
  if (b.windowStart !== null && now >= b.windowStart + period(cfg)) return { windowStart: null, used: 0 };
  return b;
}

export function budgetRemaining(q: QueueState, now: number, cfg: QueueConfig): number {
  return Math.max(0, cfg.sessionStartLimit - currentBudget(q.budget, now, cfg).used);
}

/** Adds a request at the back, unless the same shard already waits for the same control. */
export function enqueue(q: QueueState, req: Request): QueueState {
  if (q.waiting.some((r) => r.shard === req.shard && r.control === req.control)) return q;
  return { ...q, waiting: [...q.waiting, req] };
}

export function dropWhere(q: QueueState, pred: (r: Request) => boolean): QueueState {
  const waiting = q.waiting.filter((r) => !pred(r));
  return waiting.length === q.waiting.length ? q : { ...q, waiting };
}

export interface DrainResult {
  readonly state: QueueState;
  readonly grants: Request[];
  /** When the next grant can happen, or null when nothing waits. */
  readonly nextAt: number | null;
  /** Requests wait only because the budget is spent. */
  readonly exhausted: boolean;
}

/**
 * Grants every waiting request that the rules allow at `now`, oldest first.
 * Requests that are no longer `eligible` (the control lost the shard) are dropped.
 */
export function drain(q: QueueState, now: number, cfg: QueueConfig, eligible: (r: Request) => boolean): DrainResult {
  let budget = currentBudget(q.budget, now, cfg);
  const free = (last: number | null): boolean => last === null || now >= last + cfg.identifyWindow;
  const freeBuckets = q.lastGrant.filter(free).length;
  const canGrant = freeBuckets > 0 && budget.used < cfg.sessionStartLimit;
  if (!canGrant || q.waiting.length === 0) {
    // Nothing can be granted now: leave the queue as it is (no O(waiting) work).
    const state = budget === q.budget ? q : { ...q, budget };
    return { state, grants: [], nextAt: nextWake(state, now, cfg), exhausted: q.waiting.length > 0 && budget.used >= cfg.sessionStartLimit };
  }
  const lastGrant = [...q.lastGrant];
  const grants: Request[] = [];
  const keep: Request[] = [];
  let left = freeBuckets;
  let i = 0;
  for (; i < q.waiting.length && left > 0 && budget.used < cfg.sessionStartLimit; i++) {
    const r = q.waiting[i] as Request;
    if (!eligible(r)) continue;
    const b = bucketOf(r.shard, cfg.maxConcurrency);
    if (free(lastGrant[b] ?? null)) {
      lastGrant[b] = now;
      left--;
      budget = { windowStart: budget.windowStart ?? now, used: budget.used + 1 };
      grants.push(r);
    } else {
      keep.push(r);
    }
  }
  // Requests after the last free bucket was used are kept as they are (checked on a later drain).
  for (; i < q.waiting.length; i++) keep.push(q.waiting[i] as Request);
  const state: QueueState = { lastGrant, budget, waiting: keep };
  return { state, grants, nextAt: nextWake(state, now, cfg), exhausted: keep.length > 0 && budget.used >= cfg.sessionStartLimit };
}

/**
 * When to drain next: the earliest moment a bucket frees up (a request may wait for it),
 * or, when the budget is spent, the end of the budget period. Null when nothing waits.
 * A wake for a bucket nobody waits for is harmless: the drain then finds nothing to do.
 */
function nextWake(q: QueueState, now: number, cfg: QueueConfig): number | null {
  if (q.waiting.length === 0) return null;
  let at = Infinity;
  for (const last of q.lastGrant) {
    const freeAt = last === null ? now : last + cfg.identifyWindow;
    if (freeAt > now && freeAt < at) at = freeAt;
  }
  // Every bucket is free yet requests wait: only after a drain that could not run (no
  // budget, handled below). Never wake at `now`, so a drain can never spin.
  if (at === Infinity) at = now + cfg.identifyWindow;
  if (q.budget.used >= cfg.sessionStartLimit) {
    if (q.budget.windowStart === null) return null;
    at = Math.max(at, q.budget.windowStart + period(cfg));
  }
  return at;
}
