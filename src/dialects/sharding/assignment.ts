/**
 * Shard assignment strategies. Pure functions over plain arrays: who gets which
 * shards at start-up, on failover and on rebalance. Shard ids are always handed out
 * in ascending order, so a contiguous input gives contiguous ranges.
 */

export interface Candidate {
  readonly name: string;
  /** Relative weight (> 0). */
  readonly capacity: number;
}

export interface PlanItem {
  readonly name: string;
  readonly ids: number[];
  readonly redundant: boolean;
}

/**
 * Splits `ids` (ascending) into consecutive chunks, one per control in order, sized
 * in proportion to capacity (largest remainder; ties go to the earlier control).
 */
export function splitByCapacity(ids: readonly number[], controls: readonly Candidate[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  if (controls.length === 0) return out;
  const total = controls.reduce((s, c) => s + (c.capacity > 0 ? c.capacity : 0), 0);
  const weights = controls.map((c) => (total > 0 ? Math.max(0, c.capacity) / total : 1 / controls.length));
  const quotas = weights.map((w) => w * ids.length);
  const sizes = quotas.map((q) => Math.floor(q));
  let left = ids.length - sizes.reduce((s, n) => s + n, 0);
  const order = quotas
    .map((q, i) => ({ i, frac: q - Math.floor(q) }))
    .sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) {
    const i = (order[k] as { i: number }).i;
    sizes[i] = (sizes[i] as number) + 1;
  }
  let at = 0;
  controls.forEach((c, i) => {
    const n = sizes[i] as number;
    out.set(c.name, ids.slice(at, at + n));
    at += n;
  });
  return out;
}

/**
 * The start-up plan: the last `redundancy` controls (never all of them while there
 * are shards to place) are standbys; the others split the shards by capacity.
 */
export function planStart(ids: readonly number[], controls: readonly Candidate[], redundancy: number): PlanItem[] {
  if (controls.length === 0) return [];
  if (ids.length === 0) return controls.map((c) => ({ name: c.name, ids: [], redundant: true }));
  const standbys = Math.min(Math.max(0, redundancy), controls.length - 1);
  const serving = controls.slice(0, controls.length - standbys);
  const split = splitByCapacity(ids, serving);
  return controls.map((c, i) => (i < serving.length ? { name: c.name, ids: split.get(c.name) ?? [], redundant: false } : { name: c.name, ids: [], redundant: true }));
}

export interface FailoverCandidate extends Candidate {
  /** Live, started, and serving nothing. */
  readonly standby: boolean;
}

/**
 * Where a lost set of shards goes: whole to the first standby when there is one,
 * otherwise split by capacity across every candidate. No candidate, no plan.
 */
export function planFailover(ids: readonly number[], candidates: readonly FailoverCandidate[]): Map<string, number[]> {
  if (ids.length === 0 || candidates.length === 0) return new Map();
  const standby = candidates.find((c) => c.standby);
  if (standby) return new Map([[standby.name, [...ids]]]);
  const split = splitByCapacity(ids, candidates);
  for (const [k, v] of split) if (v.length === 0) split.delete(k);
  return split;
}

export interface Move {
  readonly from: string | null;
  readonly to: string;
  readonly ids: number[];
}

/**
 * A rebalance: the start-up plan over every shard and the given controls, compared
 * with the current owners. Returns the moves, grouped by (from, to), in shard order.
 */
export function planRebalance(owners: readonly (string | null)[], controls: readonly Candidate[], redundancy: number): Move[] {
  const all = owners.map((_, i) => i);
  const target = new Map<number, string>();
  for (const item of planStart(all, controls, redundancy)) for (const id of item.ids) target.set(id, item.name);
  const groups = new Map<string, Move>();
  for (const id of all) {
    const to = target.get(id);
    const from = owners[id] ?? null;
    if (to === undefined || to === from) continue;
    const key = `${from ?? ''}\u0000${to}`;
    let m = groups.get(key);
    if (!m) groups.set(key, (m = { from, to, ids: [] }));
    m.ids.push(id);
  }
  return [...groups.values()];
}
