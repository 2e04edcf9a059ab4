import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haveRedisServer } from '../support/redis-server.js';
import { MusterCluster, pollUntil, type Instance } from '../support/muster-cluster.js';
import { ensureBuilt } from '../chaos/server.js';

/**
 * Cluster mode end to end, with real processes: one redis-server, three built Muster
 * processes on it (store kind redis, each its own instanceId and data dir), six sharding
 * CONTROLs (two preferring each instance, each behind a proxy that sends a new connection
 * to its preferred live instance, else the next live one).
 *
 * The failover deadline counts from the later of (a) the kill plus leaseTtl, when Redis
 * has let the dead leader's lease run out at the latest, and (b) the moment the last
 * CONTROL of the dead instance has its new connection accepted by a survivor; one second
 * after that, every shard must be served by exactly one CONTROL and shown owned and
 * CONNECTED by every survivor (`settled`), and stay so. Throughout, no shard is ever
 * served by two CONTROLs at once (start/stop hooks, i.e. CONNECT/SHUTDOWN and fencing)
 * and at most one live instance reports itself leader.
 */

let cluster: MusterCluster;

beforeAll(async () => {
  ensureBuilt();
  cluster = await MusterCluster.start({ instances: 3, controls: 6 });
}, 60_000);

afterAll(async () => {
  await cluster?.close();
}, 30_000);

async function leader(): Promise<Instance> {
  let found: Instance[] = [];
  await pollUntil(async () => (found = await cluster.leaders()).length === 1, 10_000);
  expect(found).toHaveLength(1);
  return found[0] as Instance;
}

describe.skipIf(!haveRedisServer)('sharding across three Muster processes on one Redis', () => {
  it('kill -9 of the leader: another instance leads, every shard is re-confirmed within the deadline, never two owners', async () => {
    const t = cluster.timing;
    expect(await pollUntil(() => cluster.settled(), 20_000)).toBe(true);
    // The CONTROLs are spread: two on each instance.
    expect(cluster.controls.map((c) => c.at)).toEqual([0, 1, 2, 0, 1, 2]);

    const dead = await leader();
    const orphans = cluster.controls.filter((c) => c.at === dead.index);
    expect(orphans).toHaveLength(2);
    const killedAt = performance.now();
    await cluster.kill9(dead);

    // Sample until settled: at most one leader, never two owners.
    const leaderCounts: number[] = [];
    let settledAt: number | undefined;
    let ledAt: number | undefined;
    const budget = t.leaseTtl + t.reconnectWindow + 10_000;
    while (performance.now() - killedAt < budget) {
      const n = (await cluster.leaders()).length;
      leaderCounts.push(n);
      if (n === 1) ledAt ??= performance.now();
      if (await cluster.settled()) {
        settledAt = performance.now();
        break;
      }
    }
    expect(settledAt).toBeDefined();
    const survivor = await leader();
    expect(survivor.index).not.toBe(dead.index);
    for (const c of orphans) expect(c.at).not.toBe(dead.index);
    const reconnectedAt = Math.max(...orphans.map((c) => c.connectedAt));
    const deadline = Math.max(killedAt + t.leaseTtl, reconnectedAt) + 1000;
    const figures = { leaderMs: Math.round((ledAt ?? Number.NaN) - killedAt), reconnectMs: Math.round(reconnectedAt - killedAt), settledMs: Math.round((settledAt as number) - killedAt), deadlineMs: Math.round(deadline - killedAt) };
    expect(settledAt as number, JSON.stringify(figures)).toBeLessThanOrEqual(deadline);
    expect(Math.max(...leaderCounts)).toBeLessThanOrEqual(1);

    // And it stays settled: nothing unowned past the deadline.
    for (let k = 0; k < 8; k++) expect(await cluster.settled()).toBe(true);
    expect(cluster.doubleOwned).toEqual([]);
    console.log(`failover after kill -9 of the leader: ${JSON.stringify(figures)}`);
  }, 60_000);
});
