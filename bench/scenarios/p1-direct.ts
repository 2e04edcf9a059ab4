import type { Child } from '../lib/child.js';
import { IMPL_LABEL, MESSAGE_BYTES, type Impl } from '../lib/constants.js';
import { sleep } from '../lib/ipc.js';
import { measureWindow, rotation } from '../lib/measure.js';
import { compareTable, med, record, type Samples, type Scenario, type ScenarioContext, type ScenarioResult } from '../lib/scenario.js';
import { startServer, type ServerHandle } from '../lib/servers.js';
import { fmt } from '../lib/stats.js';

const IMPLS: Impl[] = ['muster', 'ws', 'sio'];
const PAIRS = 100;

interface Rig {
  impl: Impl;
  server: ServerHandle;
  client: Child;
}

export const p1: Scenario = {
  id: 'P1',
  title: 'bus DIRECT request/reply, 100 concurrent pairs',
  method:
    `${PAIRS} requester/responder pairs in one load-generator process per implementation; each requester sends a ` +
    `~${MESSAGE_BYTES}-byte request to its responder and the next one when the reply arrives (four frames through the ` +
    'server per round trip). Muster: EVENT DIRECT with `id` + `expect_reply: 1`, answered with REPLY. Raw ws relay: ' +
    'the server parses the JSON, looks up `to` in a Map and forwards the frame. Socket.IO: `emit` to the target ' +
    'socket with an ack, the ack answered through the requester\'s ack. Server CPU is read from /proc around a ' +
    'steady-state window; implementations alternate, each measured in every repetition.',
  budgetMs: 60_000,
  async run(ctx: ScenarioContext): Promise<ScenarioResult> {
    const windowMs = ctx.quick ? 1000 : 3000;
    const pairs = ctx.quick ? 20 : PAIRS;
    const rigs: Rig[] = await Promise.all(
      IMPLS.map(async (impl) => {
        const server = await startServer(ctx.group, impl, impl === 'muster' && ctx.cpuProfDir ? { cpuProfDir: ctx.cpuProfDir, label: 'p1-muster' } : { label: `p1-${impl}` });
        const { child } = await ctx.group.start({ name: `p1-${impl}-client`, script: 'clients/p1.ts', args: ['--impl', impl] });
        await child.call('setup', { url: server.url, pairs }, 30_000);
        return { impl, server, client: child };
      }),
    );
    ctx.progress(`P1: ${rigs.length} servers up, ${pairs} pairs each`);

    const load = async (r: Rig, ms: number): Promise<void> => {
      await r.client.call('start', { maxMs: ms + 2000, maxCount: 50_000_000 });
    };
    const stop = async (r: Rig): Promise<{ errors: number }> => r.client.call<{ errors: number }>('stop', null, 10_000);

    // Warm-up: JIT and buffers, not measured.
    for (const r of rigs) {
      ctx.checkDeadline();
      await load(r, 800);
      await sleep(ctx.quick ? 300 : 800);
      await stop(r);
    }

    const cpuPerRt: Samples = {};
    const rate: Samples = {};
    let errors = 0;
    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const r of rotation(rigs, rep)) {
        ctx.checkDeadline();
        await load(r, windowMs + 1000);
        await sleep(200);
        const w = await measureWindow(
          r.server.pid,
          async () => (await r.client.call<{ count: number }>('count')).count,
          windowMs,
          50_000_000,
          () => ctx.checkDeadline(),
          (e) => ctx.windowEdge(r.server, e),
        );
        errors += (await stop(r)).errors;
        record(cpuPerRt, r.impl, w.cpuUs / w.count);
        record(rate, r.impl, (w.count * 1000) / w.ms);
        ctx.progress(`P1 rep ${rep + 1}/${ctx.reps} ${IMPL_LABEL[r.impl]}: ${fmt((w.count * 1000) / w.ms)} rt/s, ${fmt(w.cpuUs / w.count)} µs CPU/rt`);
      }
    }

    const m = med(cpuPerRt, 'muster');
    const ws = med(cpuPerRt, 'ws');
    const sio = med(cpuPerRt, 'sio');
    return {
      tables: [
        compareTable('P1: DIRECT request/reply (medians)', IMPLS, [
          { name: 'server CPU µs per round trip', better: 'lower', samples: cpuPerRt },
          { name: 'round trips/s', better: 'higher', samples: rate },
        ]),
      ],
      verdicts: [
        {
          target: 'P1: server CPU per round trip ≤ 1.2× the raw ws relay',
          holds: m <= 1.2 * ws,
          detail: `${fmt(m)} µs vs ${fmt(ws)} µs = ${(m / ws).toFixed(2)}×`,
        },
        {
          target: 'P1: server CPU per round trip ≤ 0.6× Socket.IO',
          holds: m <= 0.6 * sio,
          detail: `${fmt(m)} µs vs ${fmt(sio)} µs = ${(m / sio).toFixed(2)}×`,
        },
      ],
      notes: [
        `Window ${windowMs} ms per run after a warm-up; ${pairs} pairs; ${errors} error replies in total (should be 0).`,
        'Round trips/s is bounded by the load generator (one process, same 2 cores) as much as by the server; the CPU per round trip is the server-only figure.',
      ],
    };
  },
};
