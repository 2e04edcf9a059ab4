import { describe, expect, it } from 'vitest';
import { clusterChaos } from '../chaos/cluster.js';
import { ensureBuilt } from '../chaos/server.js';
import { haveRedisServer } from '../support/redis-server.js';

/**
 * The bounded cluster chaos schedule (test/chaos/cluster.ts): one cycle of the four steps
 * (kill the leader during a failover, SIGSTOP/SIGCONT Redis, cut the leader off Redis,
 * kill an instance holding bus services mid-traffic) in a seeded order, with the
 * invariants checked after each. `npm run chaos -- --only cluster` runs longer schedules.
 * The seed is printed; CHAOS_SEED replays one.
 */
describe.skipIf(!haveRedisServer)('cluster chaos (bounded)', () => {
  it('keeps one owner per shard, re-owns every shard in time, and misdelivers no bus reply', async () => {
    ensureBuilt();
    const seed = process.env.CHAOS_SEED !== undefined ? Number(process.env.CHAOS_SEED) : Math.floor(Math.random() * 2 ** 31);
    const lines: string[] = [];
    const res = await clusterChaos(seed, 4, (l) => lines.push(l));
    console.log(`cluster chaos, seed ${seed} (replay: CHAOS_SEED=${seed})\n${lines.join('\n')}`);
    expect(res.violations, `seed ${seed}`).toEqual([]);
    expect(res.rows).toHaveLength(4);
  }, 120_000);
});
