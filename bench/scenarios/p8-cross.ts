import { Redis } from 'ioredis';
import type { Child } from '../lib/child.js';
import { IMPL_LABEL, MESSAGE_BYTES, type Impl } from '../lib/constants.js';
import { sleep } from '../lib/ipc.js';
import { rotation } from '../lib/measure.js';
import { cpuMicros } from '../lib/proc.js';
import { startRedis } from '../lib/redis.js';
import { compareTable, med, record, type Samples, type Scenario, type ScenarioContext, type ScenarioResult } from '../lib/scenario.js';
import { startServer, type ServerHandle } from '../lib/servers.js';
import type { LagReport } from '../servers/common.js';
import { fmt, median } from '../lib/stats.js';

const IMPLS: Impl[] = ['muster', 'sio'];
const PAIRS = 32;
const RATE = 1000;
const P99_TARGET_MS = 2;

interface Rig {
  impl: Impl;
  servers: [ServerHandle, ServerHandle];
  redisPid: number;
  redisUrl: string;
  /** Responder on server A, requester on server B. */
  cross: Child;
  /** Both on server A. */
  single: Child;
}

interface Paced {
  sent: number;
  answered: number;
  errors: number;
  p50: number;
  p99: number;
  max: number;
  /** Replies slower than 4 ms, and the stalls they fall in (sent within 20 ms of each other). */
  slow: number;
  stalls: number;
  /** The load generator's own event-loop lag in the window (ms). */
  lagP99: number;
  lagMax: number;
}

export const p8: Scenario = {
  id: 'P8',
  alias: 'cross',
  title: 'cluster: bus DIRECT request/reply across two instances on one Redis',
  method:
    'Per implementation, its own redis-server (a free loopback port) and two servers sharing it: Muster with ' +
    '`cluster.redisUrl` (the Redis broker; memory store), Socket.IO 4 with `@socket.io/redis-adapter` (ioredis ' +
    `clients). ${PAIRS} requester/responder pairs in one load-generator process (clients/cross.ts), ~${MESSAGE_BYTES}-byte ` +
    'messages as in P1. **Cross**: the responder is connected to server A, the requester to server B, so the request ' +
    'and its reply each cross Redis pub/sub. **One instance**: both on server A (the same servers, the same code). ' +
    'Muster: EVENT DIRECT with `expect_reply`, answered with REPLY; Socket.IO: the requester emits "req" with an ack, ' +
    'server B emits it to the responder\'s room across servers with an ack (`io.to(id).timeout(5000).emit`), and ' +
    `the answer comes back through the requester's ack. Latency: open loop, ${RATE} requests/s spread over the pairs, ` +
    'each timed from its send to its reply in the load generator. Throughput: closed loop (each pair sends its next ' +
    'request when the reply arrives), round trips/s, the CPU of both servers and Redis per round trip, and the commands ' +
    'Redis ran per round trip (its `total_commands_processed`, read before and after the window). ' +
    'Implementations alternate; every repetition measures everything.',
  budgetMs: 150_000,
  async run(ctx: ScenarioContext): Promise<ScenarioResult> {
    const pacedMs = ctx.quick ? 1000 : 3000;
    const windowMs = ctx.quick ? 1000 : 3000;
    const rewarmMs = ctx.quick ? 300 : 1500;
    const pairs = ctx.quick ? 8 : PAIRS;
    const rigs: Rig[] = [];
    for (const impl of IMPLS) {
      ctx.checkDeadline();
      const redis = await startRedis(ctx.group, `p8-${impl}`);
      const servers = (await Promise.all(
        ['a', 'b'].map((name) =>
          startServer(ctx.group, impl, {
            label: `p8-${impl}-${name}`,
            redisUrl: redis.url,
            cluster: { redisUrl: redis.url },
            instanceId: `p8-${name}`,
            pingMs: 25_000,
            // --profile: both Muster servers (the whole run: P8 records no windows).
            cpuProfDir: ctx.cpuProfDir !== undefined ? `${ctx.cpuProfDir}-${name}` : undefined,
          }),
        ),
      )) as [ServerHandle, ServerHandle];
      const [a, b] = servers;
      const cross = (await ctx.group.start({ name: `p8-${impl}-cross`, script: 'clients/cross.ts', args: ['--impl', impl] })).child;
      const single = (await ctx.group.start({ name: `p8-${impl}-single`, script: 'clients/cross.ts', args: ['--impl', impl] })).child;
      await cross.call('setup', { respUrl: a.url, reqUrl: b.url, pairs }, 30_000);
      await single.call('setup', { respUrl: a.url, reqUrl: a.url, pairs }, 30_000);
      rigs.push({ impl, servers, redisPid: redis.pid, redisUrl: redis.url, cross, single });
    }
    ctx.progress(`P8: ${rigs.length} pairs of servers up, ${pairs} pairs each way`);
    // The floor: the same two Redis pub/sub hops with no server in between (Muster's Redis).
    const floorUrl = (rigs[0] as Rig).redisUrl;
    const floor = (await ctx.group.start({ name: 'p8-redis-floor', script: 'clients/redis-echo.ts', args: ['--url', floorUrl] })).child;

    const paced = (c: Child, ms: number): Promise<Paced> => c.call<Paced>('paced', { rate: RATE, ms }, ms + 15_000);
    const closed = async (r: Rig, c: Child, ms: number): Promise<{ rate: number; cpuPerRt: number; cmdsPerRt: number; errors: number }> => {
      const pids = [r.servers[0].pid, r.servers[1].pid, r.redisPid];
      // Redis's own count of the commands it ran (PUBLISH and the rest), for every implementation alike.
      const probe = new Redis(r.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
      await probe.connect();
      const commands = async (): Promise<number> => Number(/total_commands_processed:(\d+)/.exec(await probe.info('stats'))?.[1] ?? Number.NaN);
      await c.call('start', { maxMs: ms + 1500 });
      await sleep(300);
      const c0 = (await c.call<{ count: number }>('count')).count;
      const cpu0 = pids.reduce((s, p) => s + cpuMicros(p), 0);
      const k0 = await commands();
      const t0 = performance.now();
      await sleep(ms);
      const cpu1 = pids.reduce((s, p) => s + cpuMicros(p), 0);
      const k1 = await commands();
      const t1 = performance.now();
      const c1 = (await c.call<{ count: number }>('count')).count;
      const st = await c.call<{ errors: number }>('stop', null, 10_000);
      probe.disconnect();
      return { rate: ((c1 - c0) * 1000) / (t1 - t0), cpuPerRt: (cpu1 - cpu0) / (c1 - c0), cmdsPerRt: (k1 - k0) / (c1 - c0), errors: st.errors };
    };

    // Warm-up (JIT, the cluster's directories), not measured.
    for (const r of rigs) {
      ctx.checkDeadline();
      await paced(r.cross, 500);
      await paced(r.single, 500);
      await closed(r, r.cross, 500);
      await closed(r, r.single, 500);
    }
    await paced(floor, 500);
    const floorP50: number[] = [];
    const floorP99: number[] = [];

    const p50 = { cross: {} as Samples, single: {} as Samples };
    const p99 = { cross: {} as Samples, single: {} as Samples };
    const max: Samples = {};
    const rate = { cross: {} as Samples, single: {} as Samples };
    const cpu = { cross: {} as Samples, single: {} as Samples };
    const cmds: Samples = {};
    let errors = 0;
    const stalls: string[] = [];
    for (let rep = 0; rep < ctx.reps; rep++) {
      const f = await paced(floor, pacedMs);
      floorP50.push(f.p50);
      floorP99.push(f.p99);
      ctx.progress(`P8 rep ${rep + 1}/${ctx.reps} Redis pub/sub alone, two hops at ${RATE}/s: p50 ${fmt(f.p50)} p99 ${fmt(f.p99)} max ${fmt(f.max)} ms`);
      for (const r of rotation(rigs, rep)) {
        ctx.checkDeadline();
        // Each pair has idled while the others were measured (V8 shrinks an idle server's
        // young generation meanwhile): load it again, unmeasured, so the window sees a
        // steady load rather than the first seconds after a pause. Every implementation alike.
        await paced(r.cross, rewarmMs);
        // Where a slow reply waited: the servers' loops (and their GC) and the load generator's.
        await Promise.all(r.servers.map((s) => s.child?.call('lagStart')));
        const pc = await paced(r.cross, pacedMs);
        const lags = await Promise.all(r.servers.map((s) => s.child?.call<LagReport>('lagStop')));
        const lagText = (l: LagReport | undefined): string =>
          l ? `loop lag p99 ${fmt(l.p99)} max ${fmt(l.max)}, GC max ${fmt(l.gcMax ?? 0)} total ${fmt(l.gcTotal ?? 0)} (${l.gcCount ?? 0})` : 'n/a';
        stalls.push(
          `rep ${rep + 1} ${IMPL_LABEL[r.impl]}: cross p99 ${fmt(pc.p99)} ms, ${pc.slow} replies over 4 ms in ${pc.stalls} stalls; ` +
            `server A ${lagText(lags[0])}; server B ${lagText(lags[1])}; load generator loop lag p99 ${fmt(pc.lagP99)} max ${fmt(pc.lagMax)} ms`,
        );
        ctx.progress(`P8 ${stalls[stalls.length - 1] as string}`);
        const ps = await paced(r.single, pacedMs);
        errors += pc.errors + ps.errors + (pc.sent - pc.answered) + (ps.sent - ps.answered);
        record(p50.cross, r.impl, pc.p50);
        record(p99.cross, r.impl, pc.p99);
        record(max, r.impl, pc.max);
        record(p50.single, r.impl, ps.p50);
        record(p99.single, r.impl, ps.p99);
        const tc = await closed(r, r.cross, windowMs);
        const ts = await closed(r, r.single, windowMs);
        errors += tc.errors + ts.errors;
        record(rate.cross, r.impl, tc.rate);
        record(rate.single, r.impl, ts.rate);
        record(cpu.cross, r.impl, tc.cpuPerRt);
        record(cpu.single, r.impl, ts.cpuPerRt);
        record(cmds, r.impl, tc.cmdsPerRt);
        ctx.progress(
          `P8 rep ${rep + 1}/${ctx.reps} ${IMPL_LABEL[r.impl]}: at ${RATE}/s cross p50 ${fmt(pc.p50)} p99 ${fmt(pc.p99)} max ${fmt(pc.max)} ms ` +
            `(one instance p99 ${fmt(ps.p99)}); closed loop cross ${fmt(tc.rate)} rt/s vs one instance ${fmt(ts.rate)} rt/s, ` +
            `${fmt(tc.cpuPerRt)} vs ${fmt(ts.cpuPerRt)} µs CPU and ${fmt(tc.cmdsPerRt)} Redis commands per cross round trip`,
        );
      }
    }

    const mP99 = med(p99.cross, 'muster');
    const mRatio = med(rate.cross, 'muster') / med(rate.single, 'muster');
    const sRatio = med(rate.cross, 'sio') / med(rate.single, 'sio');
    return {
      tables: [
        compareTable(`P8: DIRECT request/reply across two instances (medians, ${pairs} pairs)`, IMPLS, [
          { name: `cross: latency p50 at ${RATE} rt/s, ms`, better: 'lower', samples: p50.cross },
          { name: `cross: latency p99 at ${RATE} rt/s, ms`, better: 'lower', samples: p99.cross },
          { name: `cross: latency max at ${RATE} rt/s, ms`, better: 'lower', samples: max },
          { name: `one instance: latency p50 at ${RATE} rt/s, ms`, better: 'lower', samples: p50.single },
          { name: `one instance: latency p99 at ${RATE} rt/s, ms`, better: 'lower', samples: p99.single },
          { name: 'cross: round trips/s, closed loop', better: 'higher', samples: rate.cross },
          { name: 'one instance: round trips/s, closed loop', better: 'higher', samples: rate.single },
          { name: 'cross: CPU µs per round trip (both servers + Redis)', better: 'lower', samples: cpu.cross },
          { name: 'one instance: CPU µs per round trip (both servers + Redis)', better: 'lower', samples: cpu.single },
          { name: 'cross: Redis commands per round trip, closed loop', better: 'lower', samples: cmds },
        ]),
      ],
      verdicts: [
        {
          target: `P8: cross-instance DIRECT request/reply p99 ≤ ${P99_TARGET_MS} ms at ${RATE} round trips/s`,
          holds: mP99 <= P99_TARGET_MS,
          detail: `p99 ${fmt(mP99)} ms (p50 ${fmt(med(p50.cross, 'muster'))} ms; one instance p99 ${fmt(med(p99.single, 'muster'))} ms; Redis pub/sub alone, two hops, p99 ${fmt(median(floorP99))} ms); Socket.IO + redis-adapter p99 ${fmt(med(p99.cross, 'sio'))} ms`,
        },
        {
          target: 'P8: cross-instance throughput ≥ 0.5× the same pairs on one instance',
          holds: mRatio >= 0.5,
          detail: `${fmt(med(rate.cross, 'muster'))} vs ${fmt(med(rate.single, 'muster'))} rt/s = ${mRatio.toFixed(2)}×; Socket.IO + redis-adapter ${fmt(med(rate.cross, 'sio'))} vs ${fmt(med(rate.single, 'sio'))} rt/s = ${sRatio.toFixed(2)}×`,
        },
      ],
      notes: [
        `The floor on this machine: a message and its answer each crossing Redis pub/sub once, with no server in between (clients/redis-echo.ts, both sides in one process, ${RATE}/s): p50 ${fmt(median(floorP50))} ms, p99 ${fmt(median(floorP99))} ms (runs: ${floorP99.map((x) => fmt(x)).join(' / ')} ms p99).`,
        `Latency windows ${pacedMs} ms, each right after ${rewarmMs} ms of the same load, unmeasured; throughput windows ${windowMs} ms, after a warm-up; ${errors} error or missing replies in total (should be 0).`,
        'Latencies are read in the load generator, which shares the 2 cores with both servers, Redis and the other helpers\' load: a scheduling delay on the box is part of every figure.',
        `Where the slow replies waited (cross, at ${RATE}/s; A holds the responders, B the requesters; ms): ${stalls.join('; ')}.`,
      ],
    };
  },
};
