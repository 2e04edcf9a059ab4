/**
 * Shard ranges, as the sharding dialect carries them on the wire: `[first, last]`,
 * both ends included. Pure helpers shared by the server and the client.
 */

/** `[first, last]`, inclusive, `0 <= first <= last`. */
export type Range = [number, number];

/** Sorted, merged ranges covering exactly the given shard ids. */
export function toRanges(ids: Iterable<number>): Range[] {
  const sorted = [...new Set(ids)].sort((a, b) => a - b);
  const out: Range[] = [];
  for (const id of sorted) {
    const last = out[out.length - 1];
    if (last && id === last[1] + 1) last[1] = id;
    else out.push([id, id]);
  }
  return out;
}

/**
 * The shard ids inside `ranges` that are below `limit`, ascending and unique. Ids
 * at or above `limit` are left out (see `outside`), so a hostile `[0, 1e12]` costs
 * no more than `limit` entries.
 */
export function expand(ranges: readonly Range[], limit: number): number[] {
  const seen = new Set<number>();
  for (const [first, last] of ranges) {
    const end = Math.min(last, limit - 1);
    for (let id = Math.max(0, first); id <= end; id++) seen.add(id);
  }
  return [...seen].sort((a, b) => a - b);
}

/** The parts of `ranges` that lie at or above `limit` (shards that do not exist). */
export function outside(ranges: readonly Range[], limit: number): Range[] {
  const out: Range[] = [];
  for (const [first, last] of ranges) {
    if (last >= limit) out.push([Math.max(first, limit), last]);
  }
  return out;
}

/** How many shard ids the ranges cover (overlaps counted once). */
export function countIds(ranges: readonly Range[]): number {
  let n = 0;
  let end = -1;
  for (const [first, last] of [...ranges].sort((a, b) => a[0] - b[0])) {
    if (last <= end) continue;
    n += last - Math.max(first, end + 1) + 1;
    end = last;
  }
  return n;
}

/** `0-7,9,12-15`, for logs and messages. */
export function formatRanges(ranges: readonly Range[]): string {
  if (ranges.length === 0) return 'none';
  return ranges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',');
}
