import type { Child } from '../lib/child.js';
import { IMPL_LABEL, type Impl } from '../lib/constants.js';
import { sleep } from '../lib/ipc.js';
import { rotation } from '../lib/measure.js';
import { rssKiB } from '../lib/proc.js';
import { compareTable, med, record, type MetricSpec, type Samples, type Scenario, type ScenarioContext, type ScenarioResult } from '../lib/scenario.js';
import { startServer, stopServer } from '../lib/servers.js';
import { fmt } from '../lib/stats.js';

const IMPLS: Impl[] = ['muster', 'ws', 'sio'];
const LEVELS = [1000, 10_000, 19_000];
/** Client processes: 19,000 / 4 = 4,750 sockets each, far under the 20,000 fd limit. */
const CLIENT_PROCS = 4;
/** Heartbeat period for every implementation (bus PING, ws ping, engine.io ping). */
const HEARTBEAT_MS = 5000;
/** How long a level is held before it is read: the top level for longer than one heartbeat. */
const HOLD_MS = 1000;

export const p3: Scenario = {
  id: 'P3',
  title: 'idle connections with heartbeats running: RSS per connection',
  method:
    `A fresh server per run; its RSS (VmRSS from /proc) is read before any client connects (the baseline, after a ` +
    `forced GC), then at ${LEVELS.map((l) => l.toLocaleString('en-US')).join(', ')} connections opened from ${CLIENT_PROCS} ` +
    `client processes (minimal raw WebSocket peers, clients/raw.ts). Heartbeats run every ${HEARTBEAT_MS} ms in every ` +
    'implementation (bus PING answered with PONG; ws ping/pong; engine.io ping/pong). The 1,000 and 10,000 levels are ' +
    `read ${HOLD_MS} ms after they are reached; the top level is held for 1.1 heartbeats, so every connection has ` +
    'exchanged a heartbeat before the headline figure is read. ' +
    'Per connection = (RSS − baseline) ÷ connections. Two readings per level: as found, and after a forced full GC ' +
    '(`global.gc()` in the server; garbage left over from the connect burst is then not counted).',
  // 3 implementations × 3 repetitions × 19,000 connections is 171,000 WebSocket
  // handshakes plus heartbeats: on 2 cores that alone takes more than the minute the
  // issue allows a scenario (see README.md), so P3's bound is 8 minutes.
  budgetMs: 480_000,
  async run(ctx: ScenarioContext): Promise<ScenarioResult> {
    const levels = ctx.quick ? [500, 2000] : LEVELS;
    const topHoldMs = ctx.quick ? 1000 : Math.round(HEARTBEAT_MS * 1.1);
    const clients: Child[] = await Promise.all(
      Array.from({ length: CLIENT_PROCS }, (_, i) => ctx.group.start({ name: `p3-client${i}`, script: 'clients/idle.ts' }).then((r) => r.child)),
    );

    // perConn[level] / perConnGc[level]: KiB per connection; baseline in MiB.
    const perConn = new Map<number, Samples>(levels.map((l) => [l, {}]));
    const perConnGc = new Map<number, Samples>(levels.map((l) => [l, {}]));
    const baseline: Samples = {};

    for (let rep = 0; rep < ctx.reps; rep++) {
      for (const impl of rotation(IMPLS, rep)) {
        ctx.checkDeadline();
        const server = await startServer(ctx.group, impl, {
          bus: { heartbeatInterval: HEARTBEAT_MS },
          pingMs: HEARTBEAT_MS,
          label: `p3-${impl}`,
        });
        const child = server.child;
        if (!child) throw new Error('P3 needs a Node server');
        await sleep(300);
        await child.call('gc');
        const base = rssKiB(server.pid);
        record(baseline, impl, base / 1024);
        let open = 0;
        let connectMs = 0;
        const line: string[] = [];
        for (const level of levels) {
          ctx.checkDeadline();
          const add = level - open;
          const shares = clients.map((_, i) => Math.floor(add / CLIENT_PROCS) + (i < add % CLIENT_PROCS ? 1 : 0));
          const t0 = performance.now();
          await Promise.all(clients.map((c, i) => c.call('connect', { impl, url: server.url, n: shares[i], concurrency: 100 }, 90_000)));
          connectMs += performance.now() - t0;
          open = level;
          await sleep(level === levels[levels.length - 1] ? topHoldMs : HOLD_MS);
          const rss = rssKiB(server.pid);
          await child.call('gc');
          const rssGc = rssKiB(server.pid);
          record(perConn.get(level) as Samples, impl, (rss - base) / level);
          record(perConnGc.get(level) as Samples, impl, (rssGc - base) / level);
          line.push(`${level}: ${fmt((rss - base) / level)} (${fmt((rssGc - base) / level)} after GC)`);
        }
        ctx.progress(`P3 rep ${rep + 1}/${ctx.reps} ${IMPL_LABEL[impl]}: KiB/conn ${line.join(', ')}; baseline ${fmt(base / 1024)} MiB; ${fmt(connectMs / 1000)} s connecting`);
        await Promise.all(clients.map((c) => c.call('close')));
        await stopServer(ctx.group, server);
      }
    }

    const metrics: MetricSpec[] = [];
    for (const l of levels) {
      metrics.push({ name: `KiB per connection at ${l.toLocaleString('en-US')}`, better: 'lower', samples: perConn.get(l) as Samples });
    }
    for (const l of levels) {
      metrics.push({ name: `KiB per connection at ${l.toLocaleString('en-US')}, after GC`, better: 'lower', samples: perConnGc.get(l) as Samples });
    }
    metrics.push({ name: 'baseline RSS, MiB', better: 'lower', samples: baseline });

    const top = levels[levels.length - 1] as number;
    const m = med(perConn.get(top) as Samples, 'muster');
    const mGc = med(perConnGc.get(top) as Samples, 'muster');
    const w = med(perConn.get(top) as Samples, 'ws');
    const s = med(perConn.get(top) as Samples, 'sio');
    return {
      tables: [compareTable('P3: server RSS per idle connection, KiB (medians)', IMPLS, metrics)],
      verdicts: [
        {
          target: `P3: ≤ 6 KiB per connection at ${top.toLocaleString('en-US')}`,
          holds: m <= 6,
          detail: `${fmt(m)} KiB as found (${fmt(mGc)} KiB after GC); raw ws ${fmt(w)}, Socket.IO ${fmt(s)}`,
        },
      ],
      notes: [
        `Heartbeat every ${HEARTBEAT_MS} ms; lower levels held ${HOLD_MS} ms, the top level ${topHoldMs} ms before reading. Clients in ${CLIENT_PROCS} processes.`,
        'The bus peer is the simplest possible: one IDENTIFY (token only), then only PONGs.',
      ],
    };
  },
};
