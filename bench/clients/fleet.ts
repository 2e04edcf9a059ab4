import type { ShardingControl } from '../../src/client/sharding.js';
import { sleep } from '../lib/ipc.js';

/** Helpers of the sharding load generators (sharding.ts for P4/P5, leader.ts for P9). */

export type Range = [number, number];

/** The shard ids in `ranges`. */
export function ids(ranges: readonly Range[]): number[] {
  const out: number[] = [];
  for (const [a, b] of ranges) for (let i = a; i <= b; i++) out.push(i);
  return out;
}

/** Waits (polling every 2 ms) until `cond` holds; throws `what: not within …` after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(2);
  }
}

/** `shardCount` shards are connected across the CONTROLs, none on two of them. */
export function eachShardOnce(controls: readonly ShardingControl[], shardCount: number): boolean {
  const seen = new Set<number>();
  let total = 0;
  for (const c of controls)
    for (const id of ids(c.connected as Range[])) {
      seen.add(id);
      total++;
    }
  return seen.size === shardCount && total === shardCount;
}
