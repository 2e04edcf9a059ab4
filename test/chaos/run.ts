/**
 * `npm run chaos`: the built server against a hostile or unlucky world, on loopback,
 * bounded in time, stopping by itself. Prints its seed and one table:
 *
 *   kill9      kill -9 under pipelined Clusterio writes; every acknowledged write survives
 *   lockout    broken upgrades of every kind past maxConnections (lowered to 32 here), then
 *              the server filled with valid peers to exactly maxConnections, then valid connects
 *   flood      a connection flood from one address; then one bus sender (its own process)
 *              flooding GLOBAL past its rate limit while healthy receivers listen and ping
 *   slowloris  WebSocket upgrade and plain HTTP headers sent a byte at a time
 *   slowbody   HTTP requests whose body trickles in a byte at a time
 *   junk       one address sending junk and 1 MiB frames before auth to every dialect
 *   cluster    three instances on one redis-server: 4 × iterations seeded steps (kill the
 *              leader mid-failover, SIGSTOP Redis, cut the leader off Redis, kill an instance
 *              holding bus services mid-traffic); see cluster.ts for the invariants
 *
 * Every timed scenario gets a fresh server: flood and junk at the default limits, the slow
 * ones with short HTTP timeouts (SLOW_HTTP) so that they end quickly. Abuse comes from
 * 127.0.0.2 (the flooding bus sender from 127.0.0.3), healthy peers from 127.0.0.1, so a
 * per-address limit on the abuser is not counted as a lockout. Columns (README, "Chaos"):
 * writes acknowledged / lost (must be 0), lockouts (valid connects or /healthz from the
 * healthy address refused during or after the abuse, or a healthy peer cut; must be 0),
 * 5xx answers seen by any client (must be 0; the one 503 the lockout scenario asks for
 * from a server it filled on purpose is not one), and a healthy bus peer's PING round
 * trip (p50/p99 ms) during the abuse.
 *
 *   npm run chaos -- [--seed N] [--iterations N] [--duration MS] [--only kill9,junk]
 *
 * --iterations is the number of kills (default 5); --duration the length of each timed
 * scenario (default 3000 ms; the slow ones end as soon as the server has closed every
 * slow socket). Exits 1 if a must-be-0 column is not 0 or a row failed (a healthy
 * receiver cut, a slow socket outliving its timeout, the server dying).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { haveRedisServer } from '../support/redis-server.js';
import { clusterChaos } from './cluster.js';
import { crashRun } from './crash.js';
import type { FloodResult } from './flooder.js';
import { ABUSER, busPeer, FLOODER, lockouts, PATHS, pct, pinger, rawRequest, type Row, sleep, Tally, upgradeHead } from './peers.js';
import { ensureBuilt, rng, SECRETS, startServer, type RunningServer, type ServerOptions } from './server.js';

// ---- scenarios ----

async function kill9(seed: number, iterations: number): Promise<Row> {
  const results = await crashRun({ seed, kills: iterations });
  const acked = results.reduce((n, r) => n + r.ackedCreates + r.ackedSets, 0);
  const lost = results.reduce((n, r) => n + r.lostCreates + r.lostSets, 0);
  const hit = results.filter((r) => r.lostCreates + r.lostSets > 0).length;
  return {
    scenario: 'kill9',
    acked,
    lost,
    lockouts: 0,
    fiveXx: 0,
    notes: `${iterations} kills, at ${results.map((r) => r.killAfter).join('/')} acks; ${hit} of them lost an acknowledged write${lost > 0 ? `: ${results.flatMap((r) => r.details).slice(0, 2).join('; ')}` : ''}`,
  };
}

async function lockout(dir: string, rand: () => number): Promise<Row> {
  const maxConnections = 32;
  const srv = await startServer({ dataDir: join(dir, 'lockout'), extra: { limits: { maxConnections } } });
  const tally = new Tally();
  try {
    const kinds: Array<[string, (path: string) => Promise<number>]> = [
      ['bad key', (p) => rawRequest(srv, upgradeHead(p, { 'Sec-WebSocket-Key': 'not-a-key' }))],
      ['bad version', (p) => rawRequest(srv, upgradeHead(p, { 'Sec-WebSocket-Version': '99' }))],
      ['POST', (p) => rawRequest(srv, upgradeHead(p, {}, 'POST'))],
      ['bad subprotocol', (p) => rawRequest(srv, upgradeHead(p, { 'Sec-WebSocket-Protocol': ',,bad proto,' }))],
      ['destroyed mid-handshake', (p) => rawRequest(srv, upgradeHead(p, {}), { destroyAfterWrite: true })],
    ];
    let sent = 0;
    for (let i = 0; i < 4 * maxConnections; i++) {
      const [, send] = kinds[Math.floor(rand() * kinds.length)] as [string, (p: string) => Promise<number>];
      const status = await send(PATHS[Math.floor(rand() * PATHS.length)] as string);
      if (status > 0) tally.see(status);
      sent++;
    }
    await sleep(200);
    // Every slot must be free again: fill the server to exactly maxConnections with valid
    // peers (each one refused before it is full is a lockout), check that the next one is
    // refused 503 as it should be (not a lockout, not counted as a 5xx), then let them go
    // and connect again.
    const held: WebSocket[] = [];
    let refused = 0;
    for (let i = 0; i < maxConnections; i++) {
      try {
        held.push(await busPeer(srv, tally));
      } catch {
        refused++;
      }
    }
    const full = new Tally();
    let overflow = 'admitted';
    try {
      held.push(await busPeer(srv, full));
    } catch (err) {
      overflow = full.statuses.has(503) ? '503' : (err as Error).message;
    }
    await Promise.all(held.map((ws) => new Promise<void>((r) => (ws.on('close', () => r()), ws.close()))));
    await sleep(100);
    refused += await lockouts(srv, tally, 10);
    return {
      scenario: 'lockout',
      lockouts: refused,
      fiveXx: tally.fiveXx,
      notes: `${sent} broken upgrades (5 kinds) at maxConnections ${maxConnections}, answers ${tally.summary()}; then ${held.length - (overflow === 'admitted' ? 1 : 0)}/${maxConnections} valid peers held at once, the next one ${overflow === '503' ? 'refused 503 (full, expected)' : overflow}, then 10 valid connects`,
      ...(overflow === '503' ? {} : { fail: `the ${maxConnections + 1}th peer was not refused 503 (${overflow}): slots are miscounted` }),
    };
  } finally {
    await srv.stop();
  }
}

/** The connection flood from one address: opens and drops connections to every dialect, 50 at a time. */
async function connectFlood(srv: RunningServer, tally: Tally, durationMs: number): Promise<number> {
  const until = Date.now() + durationMs;
  let opened = 0;
  const worker = async (): Promise<void> => {
    while (Date.now() < until) {
      await new Promise<void>((resolve) => {
        const ws = new WebSocket(`${srv.ws}${PATHS[opened++ % PATHS.length] as string}`, { localAddress: ABUSER });
        ws.on('unexpected-response', (_q, res) => {
          tally.see(res.statusCode ?? 0);
          ws.terminate();
          resolve();
        });
        ws.on('open', () => ws.terminate());
        ws.on('error', () => resolve());
        ws.on('close', () => resolve());
      });
    }
  };
  await Promise.all(Array.from({ length: 50 }, worker));
  return opened;
}

/** Runs test/chaos/flooder.ts in its own process (so its send loop is not on the healthy peers' event loop). */
function runFlooder(srv: RunningServer, durationMs: number): Promise<FloodResult> {
  const file = join(import.meta.dirname, 'flooder.ts');
  const child = spawn(process.execPath, [...process.execArgv, file, `${srv.ws}/bus`, SECRETS.bus, FLOODER, String(durationMs)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const kill = setTimeout(() => child.kill('SIGKILL'), durationMs + 15_000);
  return new Promise((resolve) =>
    child.on('exit', () => {
      clearTimeout(kill);
      try {
        resolve(JSON.parse(out.trim().split('\n').pop() as string) as FloodResult);
      } catch {
        resolve({ sent: 0, rateLimited: 0, otherErrors: {}, error: `flooder failed: ${err.slice(-300) || out.slice(-300)}` });
      }
    }),
  );
}

async function flood(srv: RunningServer, durationMs: number): Promise<Row> {
  const tally = new Tally();
  // 1. One address opens and drops connections as fast as it can.
  const opened = await connectFlood(srv, tally, durationMs / 2);
  let refused = await lockouts(srv, tally);
  // 2. One authenticated bus sender (its own process) floods GLOBAL; a healthy peer pings
  //    and three more healthy receivers only listen. None of them may be cut.
  const base = await pinger(srv, tally);
  await sleep(Math.min(1000, durationMs / 3));
  const baseline = (await base.stop()).rtts;
  const ping = await pinger(srv, tally);
  const receivers = await Promise.all([0, 1, 2].map(() => busPeer(srv, tally)));
  let receiverCut = 0;
  let received = 0;
  for (const r of receivers) {
    r.on('message', () => received++);
    r.once('close', () => receiverCut++);
  }
  const f = await runFlooder(srv, durationMs / 2);
  const { rtts, cut } = await ping.stop();
  for (const r of receivers) r.removeAllListeners('close').close();
  const healthyCut = receiverCut + (cut ? 1 : 0);
  refused += await lockouts(srv, tally);
  const others = Object.entries(f.otherErrors).map(([e, n]) => `${e}×${n}`).join(' ');
  return {
    scenario: 'flood',
    lockouts: refused,
    fiveXx: tally.fiveXx,
    p50: pct(rtts, 50),
    p99: pct(rtts, 99),
    notes:
      `${opened} connects from one address (answers ${tally.summary() || 'none refused'}); ` +
      `GLOBAL flood of ${f.sent} EVENTs in ${durationMs / 2} ms: ${f.rateLimited} answered RATE_LIMITED${others ? `, ${others}` : ''}, ` +
      `${(received / receivers.length).toFixed(0)} delivered per receiver, ` +
      `${f.error ? `flooder error: ${f.error}` : f.closedByServer !== undefined ? `sender closed by the server ${f.closedByServer} ${f.closeReason ?? ''}`.trim() : 'sender kept'}; ` +
      `healthy receivers cut ${healthyCut}/4; baseline p50/p99 ${fmt(pct(baseline, 50))}/${fmt(pct(baseline, 99))} ms`,
    ...(healthyCut > 0 || f.error ? { fail: f.error ?? `${healthyCut} healthy receiver(s) cut` } : {}),
  };
}

/** Slow sockets from the abuser: when each was closed by the server, and whether it was answered 408. */
class SlowSockets {
  readonly socks: Array<{ sock: net.Socket; openedAt: number; closedAt?: number; status?: number }> = [];
  constructor(
    readonly srv: RunningServer,
    readonly tally: Tally,
  ) {}
  open(first: string): net.Socket {
    const port = Number(new URL(this.srv.base).port);
    const sock = net.connect({ host: '127.0.0.1', port, localAddress: ABUSER });
    const rec: (typeof this.socks)[number] = { sock, openedAt: performance.now() };
    this.socks.push(rec);
    sock.on('error', () => undefined);
    sock.on('close', () => (rec.closedAt ??= performance.now()));
    sock.on('data', (b: Buffer) => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(b.toString('latin1'));
      if (m && rec.status === undefined) {
        rec.status = Number(m[1]);
        this.tally.see(rec.status);
      }
    });
    if (first) sock.on('connect', () => sock.write(first));
    return sock;
  }
  get open_(): number {
    return this.socks.filter((s) => s.closedAt === undefined).length;
  }
  /** Waits until every socket was closed by the server, or `ms` passes. */
  async settle(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until && this.open_ > 0) await sleep(50);
  }
  summary(): string {
    const closed = this.socks.filter((s) => s.closedAt !== undefined);
    const after = closed.map((s) => ((s.closedAt as number) - s.openedAt) / 1000);
    const answered = new Tally();
    for (const s of closed) if (s.status !== undefined) answered.see(s.status);
    return (
      `${closed.length}/${this.socks.length} closed by the server (answers ${answered.summary() || 'none'})` +
      (after.length > 0 ? ` after p50 ${(pct(after, 50) as number).toFixed(2)} s, max ${Math.max(...after).toFixed(2)} s` : '')
    );
  }
  destroy(): void {
    for (const s of this.socks) {
      s.closedAt ??= Number.NaN;
      s.sock.destroy();
    }
  }
}

/** `http` timeouts of the server the slow scenarios run against (short, for a bounded run). */
const SLOW_HTTP = { headersTimeout: 1000, requestTimeout: 2000 };

async function slowloris(srv: RunningServer, durationMs: number): Promise<Row> {
  const tally = new Tally();
  const slow = new SlowSockets(srv, tally);
  // Half send WebSocket upgrade headers (to every dialect), half plain HTTP headers; a
  // byte each per 100 ms, never the blank line that ends the headers.
  const heads: string[] = [];
  for (let i = 0; i < 200; i++) {
    heads.push(i % 2 === 0 ? upgradeHead(PATHS[(i / 2) % PATHS.length] as string, {}) : `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: ${'s'.repeat(200)}\r\n\r\n`);
  }
  const socks = heads.map(() => slow.open(''));
  const ping = await pinger(srv, tally);
  let at = 0;
  const drip = setInterval(() => {
    socks.forEach((s, i) => {
      const head = heads[i] as string;
      if (!s.destroyed && at < head.length - 4) s.write(head[at] as string);
    });
    at++;
  }, 100);
  await slow.settle(Math.max(durationMs, SLOW_HTTP.headersTimeout + 2000));
  const refused = await lockouts(srv, tally);
  clearInterval(drip);
  const { rtts, cut } = await ping.stop();
  const open = slow.open_;
  const notes = `100 WebSocket upgrade + 100 HTTP header trickles, a byte each per 100 ms, headersTimeout ${SLOW_HTTP.headersTimeout / 1000} s: ${slow.summary()}, ${open} still open`;
  slow.destroy();
  return {
    scenario: 'slowloris',
    lockouts: refused + (cut ? 1 : 0),
    fiveXx: tally.fiveXx,
    p50: pct(rtts, 50),
    p99: pct(rtts, 99),
    notes,
    ...(open > 0 ? { fail: `${open} slow sockets outlived headersTimeout` } : {}),
  };
}

async function slowbody(srv: RunningServer, durationMs: number): Promise<Row> {
  const tally = new Tally();
  const slow = new SlowSockets(srv, tally);
  // Half to a public gamelist route, half to an admin route: headers complete, the body trickles.
  const socks = Array.from({ length: 200 }, (_, i) =>
    slow.open(
      `POST ${i % 2 === 0 ? '/v2/servers/1/join' : '/api/v1/sharding/resume'} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n${i % 2 === 0 ? '' : `Authorization: Bearer ${SECRETS.admin}\r\n`}\r\n{`,
    ),
  );
  const ping = await pinger(srv, tally);
  const drip = setInterval(() => {
    for (const s of socks) if (!s.destroyed) s.write(' ');
  }, 200);
  await slow.settle(Math.max(durationMs, SLOW_HTTP.requestTimeout + 2000));
  const refused = await lockouts(srv, tally);
  clearInterval(drip);
  const { rtts, cut } = await ping.stop();
  const open = slow.open_;
  const notes = `200 POSTs (public and admin) whose body trickles a byte per 200 ms, requestTimeout ${SLOW_HTTP.requestTimeout / 1000} s: ${slow.summary()}, ${open} still open`;
  slow.destroy();
  return {
    scenario: 'slowbody',
    lockouts: refused + (cut ? 1 : 0),
    fiveXx: tally.fiveXx,
    p50: pct(rtts, 50),
    p99: pct(rtts, 99),
    notes,
    ...(open > 0 ? { fail: `${open} slow bodies outlived requestTimeout` } : {}),
  };
}

async function junk(srv: RunningServer, durationMs: number, rand: () => number): Promise<Row> {
  const tally = new Tally();
  // Baseline first: the healthy peer alone.
  const base = await pinger(srv, tally);
  await sleep(Math.min(1000, durationMs / 3));
  const baseline = (await base.stop()).rtts;

  const big = `{"a":"${'x'.repeat(1_048_576 - 16)}"}`;
  const nested = '['.repeat(100_000);
  const junkFrames = [big, nested, 'not json at all', '{"op":1,"data":{"token":"wrong"}}', Buffer.alloc(65536, 0xff)];
  const ping = await pinger(srv, tally);
  const stopAt = Date.now() + durationMs;
  let frames = 0;
  let connects = 0;
  // One abuser connection per dialect, reconnecting whenever it is closed.
  const abuse = async (path: string): Promise<void> => {
    while (Date.now() < stopAt) {
      connects++;
      await new Promise<void>((resolve) => {
        const ws = new WebSocket(`${srv.ws}${path}`, { localAddress: ABUSER, maxPayload: 1 << 20 });
        let timer: NodeJS.Timeout | undefined;
        const end = (): void => {
          clearInterval(timer);
          ws.terminate();
          resolve();
        };
        ws.on('unexpected-response', (_q, res) => {
          tally.see(res.statusCode ?? 0);
          // Refused at the upgrade (no credentials, or rate-limited): back off a little.
          setTimeout(end, 50);
        });
        ws.on('error', end);
        ws.on('close', end);
        ws.on('open', () => {
          timer = setInterval(() => {
            if (Date.now() >= stopAt) return end();
            if (ws.bufferedAmount > 4 << 20) return;
            ws.send(junkFrames[Math.floor(rand() * junkFrames.length)] as string | Buffer);
            frames++;
          }, 5);
        });
      });
    }
  };
  await Promise.all(PATHS.map(abuse));
  const { rtts, cut } = await ping.stop();
  const refused = (await lockouts(srv, tally)) + (cut ? 1 : 0);
  return {
    scenario: 'junk',
    lockouts: refused,
    fiveXx: tally.fiveXx,
    p50: pct(rtts, 50),
    p99: pct(rtts, 99),
    notes: `${frames} junk frames over ${connects} connects to 5 dialects (1 MiB, 100k-deep, garbage, wrong token, binary); baseline p50/p99 ${fmt(pct(baseline, 50))}/${fmt(pct(baseline, 99))} ms; answers ${tally.summary()}`,
  };
}

// ---- the table ----

function fmt(n: number | undefined): string {
  return n === undefined ? '-' : n < 10 ? n.toFixed(2) : n.toFixed(0);
}

function table(rows: Row[]): string {
  const head = ['scenario', 'acked', 'lost', 'lockouts', '5xx', 'p50 ms', 'p99 ms', 'notes'];
  const cells = rows.map((r) => [r.scenario, r.acked === undefined ? '-' : String(r.acked), r.lost === undefined ? '-' : String(r.lost), String(r.lockouts), String(r.fiveXx), fmt(r.p50), fmt(r.p99), r.notes]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (i === 7 ? 0 : (c[i] as string).length))));
  const line = (c: string[]): string => `| ${c.map((x, i) => (i === 7 ? x : x.padEnd(widths[i] as number))).join(' | ')} |`;
  return [line(head), `|${widths.map((w, i) => '-'.repeat(i === 7 ? 7 : w + 2)).join('|')}|`, ...cells.map(line)].join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      iterations: { type: 'string', default: '5' },
      duration: { type: 'string', default: '3000' },
      only: { type: 'string' },
    },
  });
  const seed = values.seed !== undefined ? Number(values.seed) : Math.floor(Math.random() * 2 ** 31);
  const iterations = Number(values.iterations);
  const duration = Number(values.duration);
  if (!Number.isInteger(seed) || !Number.isInteger(iterations) || iterations < 1 || !Number.isFinite(duration) || duration < 500) {
    process.stderr.write('usage: npm run chaos -- [--seed N] [--iterations N>=1] [--duration MS>=500] [--only kill9,lockout,flood,slowloris,slowbody,junk,cluster]\n');
    process.exit(2);
  }
  const all = ['kill9', 'lockout', 'flood', 'slowloris', 'slowbody', 'junk', 'cluster'];
  const only = values.only ? values.only.split(',') : all;
  const unknown = only.filter((s) => !all.includes(s));
  if (unknown.length > 0) {
    process.stderr.write(`unknown scenario(s): ${unknown.join(', ')} (known: ${all.join(', ')})\n`);
    process.exit(2);
  }
  ensureBuilt();
  process.stdout.write(`chaos: seed ${seed}, ${iterations} kills, ${duration} ms per timed scenario (replay: npm run chaos -- --seed ${seed})\n`);
  const rand = rng(seed);
  const dir = mkdtempSync(join(tmpdir(), 'muster-chaos-'));
  const rows: Row[] = [];
  const run = async (name: string, f: () => Promise<Row>): Promise<void> => {
    if (!only.includes(name)) return;
    const t = Date.now();
    try {
      rows.push(await f());
    } catch (err) {
      rows.push({ scenario: name, lockouts: 0, fiveXx: 0, notes: `scenario failed: ${(err as Error).message}`, fail: 'scenario failed' });
    }
    process.stdout.write(`  ${name} done in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
  };
  try {
    await run('kill9', () => kill9(seed, iterations));
    await run('lockout', () => lockout(dir, rand));
    // Each timed scenario gets a fresh server, so one scenario's per-address counters do
    // not spill into the next: flood and junk at the default limits, the slow ones with
    // short HTTP timeouts (so the run stays short).
    const timed: Array<[string, ServerOptions['extra'], (srv: RunningServer) => Promise<Row>]> = [
      ['flood', undefined, (srv) => flood(srv, duration)],
      ['slowloris', { http: SLOW_HTTP }, (srv) => slowloris(srv, duration)],
      ['slowbody', { http: SLOW_HTTP }, (srv) => slowbody(srv, duration)],
      ['junk', undefined, (srv) => junk(srv, duration, rand)],
    ];
    if (haveRedisServer) {
      await run('cluster', async () => {
        const res = await clusterChaos(seed, 4 * iterations, (l) => process.stdout.write(`${l}\n`));
        const settled = res.rows.map((r) => r.settledMs ?? 0);
        const notes = `${res.rows.length} steps, settled in ≤ ${Math.max(...settled)} ms; ${res.violations.length} violations${res.violations.length ? `: ${res.violations.join('; ')}` : ''}`;
        return { scenario: 'cluster', lockouts: 0, fiveXx: 0, notes, ...(res.violations.length ? { fail: 'cluster invariants broken' } : {}) };
      });
    }
    for (const [name, extra, scenario] of timed) {
      if (!only.includes(name)) continue;
      const srv = await startServer({ dataDir: join(dir, name), ...(extra ? { extra } : {}) });
      try {
        await run(name, () => scenario(srv));
        if (srv.proc.exitCode !== null || srv.proc.signalCode !== null) {
          rows.push({ scenario: 'server', lockouts: 1, fiveXx: 0, notes: `the server died during ${name}: ${srv.stderr().slice(-500)}`, fail: 'the server died' });
        }
      } finally {
        await srv.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`\n${table(rows)}\n\nseed ${seed}\n`);
  const bad = rows.filter((r) => (r.lost ?? 0) > 0 || r.lockouts > 0 || r.fiveXx > 0 || r.fail !== undefined);
  if (bad.length > 0) {
    process.stdout.write(`FAILED: ${bad.map((r) => `${r.scenario}${r.fail ? ` (${r.fail})` : ''}`).join(', ')}; lost, lockouts and 5xx must be 0\n`);
    process.exitCode = 1;
  }
}

await main();
