import type { Child } from '../lib/child.js';
import { IMPL_LABEL, type Impl } from '../lib/constants.js';
import { sleep } from '../lib/ipc.js';
import { rotation } from '../lib/measure.js';
import { compareTable, med, record, type Samples, type Scenario, type ScenarioContext, type ScenarioResult } from '../lib/scenario.js';
import { startServer, type ServerHandle } from '../lib/servers.js';
import type { LagReport } from '../servers/common.js';
import { fmt } from '../lib/stats.js';

/** The raw ws relay is the floor; Socket.IO's handshakes would double the scenario's time. */
const IMPLS: Impl[] = ['muster', 'ws'];
const PEERS = 10_000;
const CLIENT_PROCS = 2;
/** Long enough that no heartbeat fires during the scenario (their timers are still armed). */
const HEARTBEAT_MS = 60_000;

interface Rig {
  impl: Impl;
  server: ServerHandle;
  clients: Child[];
}

export const p7: Scenario = {
  id: 'P7',
  title: 'connection storm: 10,000 peers reconnecting at once',
  method:
    `${PEERS.toLocaleString('en-US')} peers per implementation (minimal raw WebSocket peers, clients/raw.ts), from ` +
    `${CLIENT_PROCS} client processes, connected and ` +
    'identified (bus: IDENTIFY answered; raw ws relay: its hello received). Then every client ' +
    'process drops all its sockets at once (no close handshake, as after a network failure) and reconnects them all ' +
    'at once, with no cap on connections in flight. Measured: the time from the drop until every peer has ' +
    're-identified, and the server\'s event-loop delay during that time (`perf_hooks.monitorEventLoopDelay`, 1 ms ' +
    'resolution, inside the server process, reported over IPC). Both servers stay up with their peers; the ' +
    'storms alternate between them.',
  // 2 implementations × (10,000 + 3 × 10,000) handshakes: more than a minute on 2 cores.
  budgetMs: 150_000,
  async run(ctx: ScenarioContext): Promise<ScenarioResult> {
    const peers = ctx.quick ? 2000 : PEERS;
    const rigs: Rig[] = [];
    for (const impl of IMPLS) {
      ctx.checkDeadline();
      const server = await startServer(ctx.group, impl, { bus: { heartbeatInterval: HEARTBEAT_MS }, pingMs: HEARTBEAT_MS, label: `p7-${impl}` });
      const clients = await Promise.all(
        Array.from({ length: CLIENT_PROCS }, (_, i) => ctx.group.start({ name: `p7-${impl}-client${i}`, script: 'clients/idle.ts' }).then((r) => r.child)),
      );
      const t0 = performance.now();
      await Promise.all(clients.map((c) => c.call('connect', { impl, url: server.url, n: peers / CLIENT_PROCS, concurrency: 200 }, 45_000)));
      ctx.progress(`P7: ${IMPL_LABEL[impl]} has ${peers} peers (connected in ${fmt(performance.now() - t0)} ms)`);
      rigs.push({ impl, server, clients });
    }

    const stormMs: Samples = {};
    const lagP99: Samples = {};
    const lagMax: Samples = {};
    let retries = 0;
    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const r of rotation(rigs, rep)) {
        ctx.checkDeadline();
        const child = r.server.child;
        if (!child) throw new Error('P7 needs a Node server');
        await sleep(500);
        await child.call('lagStart');
        const t0 = performance.now();
        const res = await Promise.all(r.clients.map((c) => c.call<{ open: number; ms: number; retries: number }>('storm', null, 45_000)));
        const ms = performance.now() - t0;
        const lag = await child.call<LagReport>('lagStop');
        const open = res.reduce((a, x) => a + x.open, 0);
        if (open !== peers) throw new Error(`${IMPL_LABEL[r.impl]}: only ${open} of ${peers} peers came back`);
        retries += res.reduce((a, x) => a + x.retries, 0);
        record(stormMs, r.impl, ms);
        record(lagP99, r.impl, lag.p99);
        record(lagMax, r.impl, lag.max);
        ctx.progress(`P7 rep ${rep + 1}/${ctx.reps} ${IMPL_LABEL[r.impl]}: all re-identified in ${fmt(ms)} ms; loop lag p99 ${fmt(lag.p99)} ms, max ${fmt(lag.max)} ms`);
      }
    }

    const m = med(stormMs, 'muster');
    const mLag = med(lagP99, 'muster');
    return {
      tables: [
        compareTable(`P7: ${peers.toLocaleString('en-US')} peers dropped and reconnecting at once (medians)`, IMPLS, [
          { name: 'time until all re-identified, ms', better: 'lower', samples: stormMs },
          { name: 'event-loop lag p99 during the storm, ms', better: 'lower', samples: lagP99 },
          { name: 'event-loop lag max during the storm, ms', better: 'lower', samples: lagMax },
        ]),
      ],
      verdicts: [
        {
          target: 'P7: time until 10,000 peers have re-identified, and event-loop lag p99 (no numeric target)',
          holds: 'no target',
          detail: `${fmt(m)} ms (${fmt((peers * 1000) / m)} identifies/s), lag p99 ${fmt(mLag)} ms; raw ws relay ${fmt(med(stormMs, 'ws'))} ms, lag p99 ${fmt(med(lagP99, 'ws'))} ms`,
        },
      ],
      notes: [
        `Connect attempts that failed and were retried during the storms: ${retries}.`,
        'Every server listens with Node\'s default backlog (511); a storm larger than the accept queue costs SYN retransmissions (1 s, then 3 s), which is when the time jumps.',
      ],
    };
  },
};
