import type { Child } from '../lib/child.js';
import { sleep } from '../lib/ipc.js';
import { HOST } from '../lib/net.js';
import { startRedis } from '../lib/redis.js';
import type { Scenario, ScenarioContext, ScenarioResult, Table } from '../lib/scenario.js';
import { failoverSharding, SHARDING_KEY } from '../lib/sharding.js';
import { startServer, type ServerHandle } from '../lib/servers.js';
import { fmt, median } from '../lib/stats.js';

const INSTANCES = 3;
const CONTROLS = 6;
const SHARDS = 96;
const LEASE_MS = 3000;
/** Scaled down like P5; the gap (lease + election) stays under heartbeatGrace − fenceMargin. */
const HEARTBEAT_MS = 1000;
const GRACE_MS = 5000;
const FENCE_MARGIN_MS = 500;
const RECONNECT_WINDOW_MS = 10_000;
const FAILOVERS = 3;
const KEY = SHARDING_KEY;
const TIMING = { heartbeatInterval: HEARTBEAT_MS, heartbeatGrace: GRACE_MS, reconnectWindow: RECONNECT_WINDOW_MS, fenceMargin: FENCE_MARGIN_MS };

interface Reconfirmed {
  controls: Array<{ name: string; at: number; how: string; shards: number }>;
  offloads: number;
  shutdowns: number;
}

export const p9: Scenario = {
  id: 'P9',
  alias: 'leader',
  title: "cluster: the sharding leader's death (kill -9) to every shard re-confirmed by the new leader",
  method:
    `${INSTANCES} Muster instances sharing the scenario's own redis-server as store and broker (\`store.kind: redis\`, ` +
    `\`cluster.leaseTtl\` ${LEASE_MS} ms), the sharding dialect on each (${SHARDS} shards, heartbeat ${HEARTBEAT_MS} ms, grace ` +
    `${GRACE_MS} ms, fence margin ${FENCE_MARGIN_MS} ms, reconnect window ${RECONNECT_WINDOW_MS} ms). ${CONTROLS} CONTROLs (real ` +
    '`ShardingControl` clients in one load-generator process), spread evenly over the instances. Each failover: once the fleet ' +
    'is stable (every shard connected on exactly one CONTROL), the leading instance is killed with SIGKILL; the CONTROLs ' +
    'that were on it reconnect to a live instance. Measured: from the kill (`Date.now()` in the runner just before the ' +
    'signal) to the moment the last CONTROL is re-confirmed by the new leader, read with `Date.now()` in the load ' +
    'generator: a CONTROL still connected when it receives the ACK of a HEARTBEAT it sent after the kill (only a live ' +
    'leader answers one), a CONTROL that was on the dead instance when it receives IDENTIFIED on its new socket. The ' +
    `killed instance is started again (a new process, the same \`instanceId\`) before the next failover; ${FAILOVERS} failovers.`,
  budgetMs: 120_000,
  async run(ctx: ScenarioContext): Promise<ScenarioResult> {
    const n = ctx.quick ? 1 : FAILOVERS;
    const redis = await startRedis(ctx.group, 'p9');
    const start = (i: number): Promise<ServerHandle> =>
      startServer(ctx.group, 'muster', {
        label: `p9-i${i}`,
        store: { kind: 'redis', url: redis.url, prefix: 'p9:' },
        cluster: { leaseTtl: LEASE_MS },
        instanceId: `p9-i${i}`,
        dialects: {
          sharding: failoverSharding(SHARDS, CONTROLS, TIMING),
        },
      });
    const servers: ServerHandle[] = [];
    for (let i = 0; i < INSTANCES; i++) servers.push(await start(i));
    const leader = async (): Promise<number> => {
      const end = performance.now() + 15_000;
      for (;;) {
        ctx.checkDeadline();
        const who = await Promise.all(servers.map((s) => (s.child as Child).call<boolean>('leader').catch(() => false)));
        const i = who.indexOf(true);
        if (i >= 0 && who.filter(Boolean).length === 1) return i;
        if (performance.now() > end) throw new Error('no single sharding leader within 15 s');
        await sleep(50);
      }
    };
    await leader();
    const { child: gen } = await ctx.group.start({ name: 'p9-controls', script: 'clients/leader.ts' });
    await gen.call('start', {
      urls: servers.map((s) => `ws://${HOST}:${s.port}/sharding`),
      key: KEY,
      n: CONTROLS,
      heartbeatGrace: GRACE_MS,
      reconnectWindow: RECONNECT_WINDOW_MS,
      fenceMargin: FENCE_MARGIN_MS,
    });

    const runs: Array<{ ms: number; acked: number; identified: number; offloads: number; shutdowns: number; victim: number }> = [];
    for (let rep = 0; rep < n; rep++) {
      ctx.checkDeadline();
      await gen.call('stable', { shardCount: SHARDS, timeoutMs: 20_000 }, 25_000);
      // Let a few heartbeats pass on the stable fleet, so the lease has been renewed.
      await sleep(1500);
      const li = await leader();
      const victim = servers[li] as ServerHandle;
      await gen.call('dead', { url: `ws://${HOST}:${victim.port}/sharding` });
      const at = Date.now();
      await (victim.child as Child).kill();
      await gen.call('killed', { at });
      const r = await gen.call<Reconfirmed>('reconfirmed', { timeoutMs: 20_000 }, 25_000);
      const last = Math.max(...r.controls.map((c) => c.at));
      const run = {
        ms: last - at,
        acked: r.controls.filter((c) => c.how === 'ACK').length,
        identified: r.controls.filter((c) => c.how === 'IDENTIFIED').length,
        offloads: r.offloads,
        shutdowns: r.shutdowns,
        victim: li,
      };
      runs.push(run);
      ctx.progress(
        `P9 failover ${rep + 1}/${n}: instance ${li} killed; every CONTROL re-confirmed ${fmt(run.ms)} ms later ` +
          `(${run.acked} by ACK, ${run.identified} by IDENTIFIED after reconnecting; ${run.offloads} OFFLOAD, ${run.shutdowns} SHUTDOWN)`,
      );
      const revived = await start(li);
      servers[li] = revived;
      await gen.call('revive', { index: li, url: `ws://${HOST}:${revived.port}/sharding` });
    }
    await gen.call('stable', { shardCount: SHARDS, timeoutMs: 20_000 }, 25_000);
    await gen.call('close');

    const ms = runs.map((r) => r.ms);
    const worst = Math.max(...ms);
    const table: Table = {
      title: `P9: ${runs.length} leader failovers, ${INSTANCES} instances, ${CONTROLS} CONTROLs, ${SHARDS} shards, lease ${LEASE_MS} ms`,
      head: ['metric', 'value'],
      rows: [
        ['kill -9 of the leader → every shard re-confirmed, median, ms (lower is better)', fmt(median(ms))],
        ['kill -9 of the leader → every shard re-confirmed, max, ms', fmt(worst)],
        ['every failover, ms', ms.map((x) => fmt(x)).join(' / ')],
        ['CONTROLs re-confirmed by ACK / by IDENTIFIED after reconnecting', runs.map((r) => `${r.acked} / ${r.identified}`).join(' · ')],
        ['OFFLOAD / SHUTDOWN frames after the kill', runs.map((r) => `${r.offloads} / ${r.shutdowns}`).join(' · ')],
      ],
    };
    return {
      tables: [table],
      verdicts: [
        {
          target: `P9: leader kill -9 → every shard re-confirmed by the new leader ≤ lease + 1 s (${LEASE_MS + 1000} ms)`,
          holds: worst <= LEASE_MS + 1000,
          detail: `median ${fmt(median(ms))} ms, max ${fmt(worst)} ms over ${runs.length} failovers (lease ${LEASE_MS} ms)`,
        },
      ],
      notes: [
        'The lease is renewed every third of its length, so at the kill between two thirds and all of it is left; the other instances try to take it every half second. Most of every figure is that wait.',
        'Times are whole milliseconds (`Date.now()`) in two processes on one machine.',
      ],
    };
  },
};
