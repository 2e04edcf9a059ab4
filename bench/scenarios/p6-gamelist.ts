import type { Child } from '../lib/child.js';
import { IMPL_LABEL, type Impl } from '../lib/constants.js';
import { sleep } from '../lib/ipc.js';
import { rotation } from '../lib/measure.js';
import { HOST } from '../lib/net.js';
import { cpuMicros } from '../lib/proc.js';
import { compareTable, med, record, type Samples, type Scenario, type ScenarioContext, type ScenarioResult, type Table } from '../lib/scenario.js';
import { startServer, type ServerHandle } from '../lib/servers.js';
import { fmt, fmtRatio } from '../lib/stats.js';

const IMPLS: Impl[] = ['muster', 'static'];
const SERVERS = 10_000;
const GS_PROCS = 4;
const REG_TOKEN = 'bench-reg-token-0123456789abcdef';
/** Concurrent keep-alive connections of the HTTP load generator (one request in flight each). */
const CONNECTIONS = 16;
const WARM_MS = 500;
const WINDOW_MS = 2000;
const PAGES = [100, 1000];
const TARGET = 0.7;

interface Run {
  requests: number;
  ms: number;
  bytes: number;
  bad: number;
}

export const p6: Scenario = {
  id: 'P6',
  title: 'GET /v2/servers over 10,000 listed servers',
  method:
    `${SERVERS.toLocaleString('en-US')} game servers registered with Muster's gamelist dialect over real sockets (\`GameServerClient\`, ` +
    `src/client/gamelist.ts, from ${GS_PROCS} load-generator processes; \`maxServers\` and \`maxServersPerIp\` raised to fit, ` +
    '`publicRatePerIpPerMinute` raised so the rate limit never answers 429, TTL and pings far beyond the run so the list does not ' +
    'change). Then `GET /v2/servers` (default sort, no filter) is loaded from another process with ' +
    `${CONNECTIONS} keep-alive connections, one request in flight on each (node:http, a closed loop bounded by time and count; ` +
    `${WARM_MS} ms warm-up, then a ${WINDOW_MS / 1000} s window), at the default page (\`limit\` 100) and the largest (\`limit\` 1000). ` +
    'The peer is a fastify server (the same version and stack as Muster\'s HTTP side) answering the same path with the same bytes, ' +
    'a static body copied from Muster\'s own answer. Measured: requests/s, and server CPU per request (from /proc, as in P1). ' +
    'Every response is checked (status 200, the expected length). The two alternate, in a rotated order.',
  budgetMs: 120_000,
  async run(ctx: ScenarioContext): Promise<ScenarioResult> {
    const count = ctx.quick ? 2000 : SERVERS;
    const muster = await startServer(ctx.group, 'muster', {
      label: 'p6',
      cpuProfDir: ctx.cpuProfDir,
      dialects: {
        gamelist: {
          enabled: true,
          regTokens: [REG_TOKEN],
          registrationTtl: 600_000,
          pingInterval: 600_000,
          pongTimeout: 600_000,
          maxServers: 2 * SERVERS,
          maxServersPerIp: 2 * SERVERS,
          publicRatePerIpPerMinute: 1_000_000_000,
        },
      },
    });
    const peer = await startServer(ctx.group, 'static', { label: 'p6-static' });
    const servers: Record<string, ServerHandle> = { muster, static: peer };

    const gs: Child[] = await Promise.all(
      Array.from({ length: GS_PROCS }, (_, i) => ctx.group.start({ name: `p6-gs${i}`, script: 'clients/gamelist.ts' }).then((r) => r.child)),
    );
    const t0 = performance.now();
    const per = count / GS_PROCS;
    const reg = await Promise.all(
      gs.map((c, i) =>
        c.call<{ listed: number; failed: number }>('register', { url: `ws://${HOST}:${muster.port}/v2/server/ws`, token: REG_TOKEN, n: per, offset: i * per, concurrency: 250 }, 60_000),
      ),
    );
    const listed = reg.reduce((a, r) => a + r.listed, 0);
    if (listed !== count) throw new Error(`only ${listed} of ${count} game servers registered (${reg.reduce((a, r) => a + r.failed, 0)} failed)`);
    ctx.progress(`P6: ${count} game servers listed in ${fmt(performance.now() - t0)} ms`);
    // The snapshot is rebuilt on a request at most once a second: let it settle, then build it.
    await sleep(1200);

    const sizes = new Map<number, number>();
    for (const limit of PAGES) {
      const res = await fetch(`http://${HOST}:${muster.port}/v2/servers?limit=${limit}`);
      const body = await res.text();
      const parsed = JSON.parse(body) as { servers: unknown[]; total: number };
      if (res.status !== 200 || parsed.total !== count || parsed.servers.length !== Math.min(limit, count)) {
        throw new Error(`GET /v2/servers?limit=${limit}: status ${res.status}, total ${parsed.total}, ${parsed.servers.length} servers`);
      }
      if (!peer.child) throw new Error('no static server child');
      sizes.set(limit, await peer.child.call<number>('setBody', { limit: String(limit), body }));
    }

    const { child: load } = await ctx.group.start({ name: 'p6-http', script: 'clients/http-load.ts' });
    const tables: Table[] = [];
    const ratios = new Map<number, number>();
    for (const limit of PAGES) {
      const rps: Samples = {};
      const cpu: Samples = {};
      const bytes = sizes.get(limit) ?? 0;
      for (let rep = 0; rep < ctx.reps; rep++) {
        for (const impl of rotation(IMPLS, rep)) {
          ctx.checkDeadline();
          const s = servers[impl] as ServerHandle;
          const params = { port: s.port, path: `/v2/servers?limit=${limit}`, connections: CONNECTIONS, maxRequests: 1_000_000, expectBytes: bytes };
          await load.call<Run>('run', { ...params, ms: WARM_MS }, 20_000);
          await ctx.windowEdge(s, 'start');
          const c0 = cpuMicros(s.pid);
          const r = await load.call<Run>('run', { ...params, ms: WINDOW_MS }, 30_000);
          const c1 = cpuMicros(s.pid);
          await ctx.windowEdge(s, 'end');
          if (r.bad > 0) throw new Error(`${IMPL_LABEL[impl]}: ${r.bad} of ${r.requests} responses were not 200 with ${bytes} bytes`);
          record(rps, impl, (r.requests * 1000) / r.ms);
          record(cpu, impl, (c1 - c0) / r.requests);
          ctx.progress(`P6 limit ${limit} rep ${rep + 1}/${ctx.reps} ${IMPL_LABEL[impl]}: ${fmt((r.requests * 1000) / r.ms)} requests/s, ${fmt((c1 - c0) / r.requests)} µs server CPU per request`);
        }
      }
      ratios.set(limit, med(rps, 'muster') / med(rps, 'static'));
      tables.push(
        compareTable(`P6: GET /v2/servers?limit=${limit} over ${count.toLocaleString('en-US')} servers, ${fmt(bytes / 1024)} KiB per response (medians)`, IMPLS, [
          { name: 'requests/s', better: 'higher', samples: rps },
          { name: 'server CPU µs per request', better: 'lower', samples: cpu },
        ]),
      );
    }
    await Promise.all(gs.map((c) => c.call('close', null, 20_000).catch(() => undefined)));
    const detail = PAGES.map((l) => `limit ${l}: ${fmtRatio(ratios.get(l) ?? Number.NaN)}`).join('; ');
    return {
      tables,
      verdicts: [
        {
          target: `P6: GET /v2/servers over 10,000 servers ≥ ${TARGET}× the throughput of a static JSON response of the same bytes (fastify)`,
          holds: PAGES.every((l) => (ratios.get(l) ?? 0) >= TARGET),
          detail: `Muster ÷ static requests/s, ${detail}`,
        },
      ],
      notes: [
        'The load generator shares the 2 cores with the server, so requests/s also measures the client (parsing the response); server CPU per request is the server-only figure.',
      ],
    };
  },
};
