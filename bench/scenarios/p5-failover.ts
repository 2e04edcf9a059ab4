import { HOST } from '../lib/net.js';
import type { Scenario, ScenarioContext, ScenarioResult, Table } from '../lib/scenario.js';
import { failoverSharding, SHARDING_KEY } from '../lib/sharding.js';
import { startServer } from '../lib/servers.js';
import { fmt, median } from '../lib/stats.js';

const SHARDS = 64;
const CONTROLS = 4;
/** Scaled down from 30 s + 15 s so that a failover takes well under a second. */
const HEARTBEAT_MS = 1000; // the config minimum
const GRACE_MS = 250;
const FENCE_MARGIN_MS = 100;
const RECONNECT_WINDOW_MS = 2000;
const FAILOVERS = 7;
const TARGET_MS = 100;
const KEY = SHARDING_KEY;
const TIMING = { heartbeatInterval: HEARTBEAT_MS, heartbeatGrace: GRACE_MS, reconnectWindow: RECONNECT_WINDOW_MS, fenceMargin: FENCE_MARGIN_MS };

interface Failover {
  victim: string;
  shards: number;
  deadline: number;
  offloadAt: number;
  latencyMs: number;
  recipients: number;
}

export const p5: Scenario = {
  id: 'P5',
  title: "failover: a CONTROL's heartbeat deadline to all of its shards re-owned",
  method:
    `One Muster with the sharding dialect (${SHARDS} shards, \`heartbeatInterval\` ${HEARTBEAT_MS} ms, \`heartbeatGrace\` ${GRACE_MS} ms, ` +
    `parallel start-up) and ${CONTROLS} CONTROLs (real \`ShardingControl\` clients in one load-generator process; a shard is ` +
    'connected as soon as it is started). Each failover: a CONTROL that serves shards stops sending HEARTBEAT just after one went ' +
    'out, with its socket left open (a hung process: the MASTER must notice by the deadline, not by a close). Measured: from its ' +
    'deadline (the last HEARTBEAT sent + interval + grace) to the arrival, at the surviving CONTROLs, of the last OFFLOAD ' +
    '`{reason: "failover", from: <it>}` needed to cover all of its shards (they are re-owned when OFFLOAD is sent), both read ' +
    'with `Date.now()` in the load generator. The MASTER then closes the dead CONTROL with 4001; it reconnects as a new, empty ' +
    `CONTROL (the standby for the next failover), and the next failover waits until every shard is connected again. ${FAILOVERS} ` +
    'failovers, different CONTROLs in turn.',
  budgetMs: 60_000,
  async run(ctx: ScenarioContext): Promise<ScenarioResult> {
    const n = ctx.quick ? 2 : FAILOVERS;
    const server = await startServer(ctx.group, 'muster', {
      label: 'p5',
      cpuProfDir: ctx.cpuProfDir,
      dialects: {
        sharding: failoverSharding(SHARDS, CONTROLS, TIMING),
      },
    });
    const { child: gen } = await ctx.group.start({ name: 'p5-controls', script: 'clients/sharding.ts' });
    await gen.call('start', {
      url: `ws://${HOST}:${server.port}/sharding`,
      key: KEY,
      n: CONTROLS,
      heartbeatGrace: GRACE_MS,
      reconnectWindow: RECONNECT_WINDOW_MS,
      fenceMargin: FENCE_MARGIN_MS,
    });
    const runs: Failover[] = [];
    for (let rep = 0; rep < n; rep++) {
      ctx.checkDeadline();
      await gen.call('stable', { shardCount: SHARDS, timeoutMs: 15_000 }, 20_000);
      const f = await gen.call<Failover>('fail', { rep, timeoutMs: 10_000, heartbeatGrace: GRACE_MS }, 15_000);
      runs.push(f);
      ctx.progress(`P5 failover ${rep + 1}/${n}: ${f.victim}'s ${f.shards} shards offloaded to ${f.recipients} CONTROL(s) ${fmt(f.latencyMs)} ms after its deadline`);
    }
    await gen.call('stable', { shardCount: SHARDS, timeoutMs: 15_000 }, 20_000);
    await gen.call('close');
    const lat = runs.map((r) => r.latencyMs);
    const med = median(lat);
    const max = Math.max(...lat);
    const table: Table = {
      title: `P5: ${runs.length} failovers, ${CONTROLS} CONTROLs, ${SHARDS} shards, heartbeat ${HEARTBEAT_MS} ms + grace ${GRACE_MS} ms`,
      head: ['metric', 'value'],
      rows: [
        ['deadline → last OFFLOAD arrived, median, ms (lower is better)', fmt(med)],
        ['deadline → last OFFLOAD arrived, max, ms', fmt(max)],
        ['every failover, ms', lat.map((x) => fmt(x)).join(' / ')],
        ['shards moved per failover', runs.map((r) => String(r.shards)).join(' / ')],
        ['CONTROLs receiving them', runs.map((r) => String(r.recipients)).join(' / ')],
      ],
    };
    return {
      tables: [table],
      verdicts: [
        {
          target: `P5: failover, heartbeat deadline → all shards re-owned (OFFLOAD sent) ≤ ${TARGET_MS} ms`,
          holds: max <= TARGET_MS,
          detail: `median ${fmt(med)} ms, max ${fmt(max)} ms over ${runs.length} failovers`,
        },
      ],
      notes: [
        'Times are whole milliseconds (`Date.now()`), and the deadline is taken from when the CONTROL sent its last HEARTBEAT, a little before the MASTER read it: each figure includes the loopback delivery of that HEARTBEAT and of the OFFLOAD.',
        'The first failover has no standby, so its shards are split over the survivors; later ones go whole to the CONTROL that came back empty after the previous failover.',
      ],
    };
  },
};
