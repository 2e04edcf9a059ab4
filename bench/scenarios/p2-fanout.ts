import type { Child } from '../lib/child.js';
import { IMPL_LABEL, MESSAGE_BYTES, type Impl } from '../lib/constants.js';
import { sleep } from '../lib/ipc.js';
import { measureWindow, rotation } from '../lib/measure.js';
import { compareTable, med, record, type Samples, type Scenario, type ScenarioContext, type ScenarioResult } from '../lib/scenario.js';
import { natsServerPath, startServer, type ServerHandle } from '../lib/servers.js';
import { fmt } from '../lib/stats.js';

const RECEIVERS = 1000;
const RECV_PROCS = 2;
/** Messages the publisher may have outstanding (not yet seen by every receiver). */
const WINDOW = 32;

interface Rig {
  impl: Impl;
  server: ServerHandle;
  recv: Child[];
  pub: Child;
  /** Deliveries seen by each receiver process. */
  counts: number[];
}

export const p2: Scenario = {
  id: 'P2',
  title: 'bus GLOBAL fan-out to 1,000 services',
  method:
    `${RECEIVERS} receivers, each on its own connection, spread over ${RECV_PROCS} load-generator processes, and one ` +
    `publisher in a third process sending ~${MESSAGE_BYTES}-byte messages with at most ${WINDOW} messages outstanding ` +
    '(receivers report progress; the runner turns it into credit). Muster: bus services, EVENT with intent GLOBAL. ' +
    'nats-server 2.9: 1,000 nats.ws connections subscribed to one subject, over its WebSocket listener. Socket.IO: ' +
    'receivers in one room, `io.to(room).emit`. Deliveries are counted by the receivers; server CPU is read from ' +
    '/proc around the window (for nats-server, all its threads).',
  budgetMs: 60_000,
  async run(ctx: ScenarioContext): Promise<ScenarioResult> {
    const impls: Impl[] = natsServerPath() ? ['muster', 'nats', 'sio'] : ['muster', 'sio'];
    const receivers = ctx.quick ? 200 : RECEIVERS;
    const perProc = Math.ceil(receivers / RECV_PROCS);
    const windowMs = ctx.quick ? 1000 : 3000;

    const rigs: Rig[] = await Promise.all(
      impls.map(async (impl) => {
        const server = await startServer(ctx.group, impl, impl === 'muster' && ctx.cpuProfDir ? { cpuProfDir: ctx.cpuProfDir, label: 'p2-muster' } : { label: `p2-${impl}` });
        const start = (role: string, i: number): Promise<Child> =>
          ctx.group.start({ name: `p2-${impl}-${role}${i}`, script: 'clients/p2.ts', args: ['--impl', impl, '--role', role] }).then((r) => r.child);
        const recv = await Promise.all(Array.from({ length: RECV_PROCS }, (_, i) => start('recv', i)));
        const pub = await start('pub', 0);
        await Promise.all(recv.map((c) => c.call('setup', { url: server.url, n: perProc, reportEvery: perProc * 2 }, 40_000)));
        await pub.call('setup', { url: server.url, n: 0, reportEvery: 0 });
        const rig: Rig = { impl, server, recv, pub, counts: recv.map(() => 0) };
        // Credit: a message is acknowledged once every receiver process has seen it.
        recv.forEach((c, i) =>
          c.on('progress', (d) => {
            rig.counts[i] = Number(d);
            const acked = Math.min(...rig.counts.map((n) => Math.floor(n / perProc)));
            pub.notify('credit', { acked });
          }),
        );
        return rig;
      }),
    );
    ctx.progress(`P2: ${rigs.length} servers up, ${receivers} receivers each`);

    const delivered = async (r: Rig): Promise<number> => {
      const cs = await Promise.all(r.recv.map((c) => c.call<{ count: number }>('count')));
      return cs.reduce((a, c) => a + c.count, 0);
    };
    const settle = async (r: Rig): Promise<void> => {
      await r.pub.call('stop');
      // Let the window drain (bounded: 3 s).
      const until = performance.now() + 3000;
      let last = -1;
      while (performance.now() < until) {
        const n = await delivered(r);
        if (n === last) break;
        last = n;
        await sleep(100);
      }
    };

    for (const r of rigs) {
      ctx.checkDeadline();
      await r.pub.call('start', { window: WINDOW, maxMessages: 1_000_000, maxMs: 1000 });
      await sleep(ctx.quick ? 300 : 500);
      await settle(r);
    }

    const cpuPerDelivery: Samples = {};
    const rate: Samples = {};
    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const r of rotation(rigs, rep)) {
        ctx.checkDeadline();
        await r.pub.call('start', { window: WINDOW, maxMessages: 10_000_000, maxMs: windowMs + 1500 });
        await sleep(250);
        const w = await measureWindow(r.server.pid, () => delivered(r), windowMs, 500_000_000, () => ctx.checkDeadline(), (e) => ctx.windowEdge(r.server, e));
        await settle(r);
        record(cpuPerDelivery, r.impl, w.cpuUs / w.count);
        record(rate, r.impl, (w.count * 1000) / w.ms);
        ctx.progress(`P2 rep ${rep + 1}/${ctx.reps} ${IMPL_LABEL[r.impl]}: ${fmt((w.count * 1000) / w.ms)} deliveries/s, ${fmt(w.cpuUs / w.count)} µs CPU/delivery`);
      }
    }

    const mr = med(rate, 'muster');
    const mc = med(cpuPerDelivery, 'muster');
    const verdicts = [];
    if (impls.includes('nats')) {
      const nr = med(rate, 'nats');
      const nc = med(cpuPerDelivery, 'nats');
      verdicts.push({
        target: 'P2: deliveries/s ≥ 0.8× nats-server over WebSocket',
        holds: mr >= 0.8 * nr,
        detail: `${fmt(mr)}/s vs ${fmt(nr)}/s = ${(mr / nr).toFixed(2)}× (server CPU per delivery ${fmt(mc)} µs vs ${fmt(nc)} µs = ${(mc / nc).toFixed(2)}×)`,
      });
    } else {
      verdicts.push({ target: 'P2: deliveries/s ≥ 0.8× nats-server over WebSocket', holds: undefined, detail: 'nats-server is not installed' });
    }
    const sr = med(rate, 'sio');
    const sc = med(cpuPerDelivery, 'sio');
    verdicts.push({
      target: 'P2: deliveries/s ≥ 3× Socket.IO rooms',
      holds: mr >= 3 * sr,
      detail: `${fmt(mr)}/s vs ${fmt(sr)}/s = ${(mr / sr).toFixed(2)}× (server CPU per delivery ${fmt(mc)} µs vs ${fmt(sc)} µs = ${(sc / mc).toFixed(2)}× less)`,
    });
    return {
      tables: [
        compareTable('P2: GLOBAL fan-out (medians)', impls, [
          { name: 'deliveries/s', better: 'higher', samples: rate },
          { name: 'server CPU µs per delivery', better: 'lower', samples: cpuPerDelivery },
        ]),
      ],
      verdicts,
      notes: [
        `Window ${windowMs} ms per run after a warm-up; ${receivers} receivers in ${RECV_PROCS} processes.`,
        'Three load-generator processes share the 2 cores with the server, so deliveries/s also measures how fast each client library can receive; CPU per delivery is the server-only cost.',
      ],
    };
  },
};
