/**
 * `npm run chaos`: the built server against a hostile or unlucky world, on loopback,
 * bounded in time, stopping by itself. Prints its seed and one table:
 *
 *   kill9      kill -9 under pipelined Clusterio writes; every acknowledged write survives
 *   lockout    broken upgrades of every kind past maxConnections (lowered to 32 here),
 *              then valid connects
 *   flood      a connection flood from one address, and one bus sender flooding GLOBAL
 *              while a healthy receiver pings
 *   slowloris  sockets sending upgrade headers a byte at a time
 *   slowbody   HTTP requests whose body trickles in a byte at a time
 *   junk       one address sending junk and 1 MiB frames before auth to every dialect
 *
 * Abuse comes from 127.0.0.2, healthy peers from 127.0.0.1 (so a per-address limit on
 * the abuser is not counted as a lockout). Columns: writes acknowledged / lost (must
 * be 0), lockouts (valid connects or /healthz refused after or during the abuse; must
 * be 0), 5xx answers seen by anyone (must be 0), and a healthy bus peer's PING round
 * trip (p50/p99 ms) during the abuse.
 *
 *   npm run chaos -- [--seed N] [--iterations N] [--duration MS] [--only kill9,junk]
 *
 * --iterations is the number of kills (default 5); --duration the length of each timed
 * scenario (default 3000 ms). Exits 1 if a must-be-0 column is not 0.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { crashRun } from './crash.js';
import { ensureBuilt, rng, SECRETS, startServer, type RunningServer } from './server.js';

const ABUSER = '127.0.0.2';
const HEALTHY = '127.0.0.1';
const PATHS = ['/bus', '/api/socket', '/sharding', '/ws', '/v2/server/ws'];

interface Row {
  scenario: string;
  acked?: number;
  lost?: number;
  lockouts: number;
  fiveXx: number;
  p50?: number | undefined;
  p99?: number | undefined;
  notes: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function pct(xs: number[], p: number): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** Counts 5xx answers seen by any client of a scenario. */
class Tally {
  fiveXx = 0;
  statuses = new Map<number, number>();
  see(status: number): void {
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    if (status >= 500) this.fiveXx++;
  }
  summary(): string {
    return [...this.statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ');
  }
}

/** An identified bus service from `address`; resolves when IDENTIFY is answered. */
function busPeer(srv: RunningServer, tally: Tally, address = HEALTHY): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${srv.ws}/bus`, { localAddress: address });
    const t = setTimeout(() => {
      ws.terminate();
      reject(new Error('identify timed out'));
    }, 5000);
    ws.on('unexpected-response', (_req, res) => {
      tally.see(res.statusCode ?? 0);
      clearTimeout(t);
      ws.terminate();
      reject(new Error(`upgrade refused: ${res.statusCode}`));
    });
    ws.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
    ws.on('open', () => ws.send(JSON.stringify({ op: 1, data: { token: SECRETS.bus } })));
    ws.once('message', (d: Buffer) => {
      clearTimeout(t);
      const f = JSON.parse(d.toString()) as { op: number };
      if (f.op === 1) resolve(ws);
      else reject(new Error(`not identified: ${d.toString()}`));
    });
  });
}

/** Valid connects (bus IDENTIFY) and /healthz from the healthy address; returns how many were refused. */
async function lockouts(srv: RunningServer, tally: Tally, n = 5): Promise<number> {
  let refused = 0;
  for (let i = 0; i < n; i++) {
    try {
      (await busPeer(srv, tally)).close();
    } catch {
      refused++;
    }
  }
  try {
    const r = await fetch(`${srv.base}/healthz`, { signal: AbortSignal.timeout(5000) });
    tally.see(r.status);
    if (r.status !== 200) refused++;
  } catch {
    refused++;
  }
  return refused;
}

/** A healthy bus peer sending PING every 10 ms and timing each PONG, until stopped. */
async function pinger(srv: RunningServer, tally: Tally): Promise<{ stop: () => Promise<{ rtts: number[]; cut: boolean }> }> {
  const ws = await busPeer(srv, tally);
  const rtts: number[] = [];
  let sentAt: number | undefined;
  let cut = false;
  ws.on('close', () => (cut = true));
  ws.on('message', (d: Buffer) => {
    const f = JSON.parse(d.toString()) as { op: number };
    if (f.op === 4 && sentAt !== undefined) {
      rtts.push(performance.now() - sentAt);
      sentAt = undefined;
    }
  });
  const timer = setInterval(() => {
    if (sentAt !== undefined || ws.readyState !== WebSocket.OPEN) return;
    sentAt = performance.now();
    ws.send('{"op":3}');
  }, 10);
  return {
    stop: async () => {
      clearInterval(timer);
      // A PING still unanswered counts with the time it has waited.
      if (sentAt !== undefined) rtts.push(performance.now() - sentAt);
      ws.close();
      return { rtts, cut };
    },
  };
}

/** Sends raw bytes from the abuser's address; resolves with the HTTP status (0 if none) once the server closes or `waitMs` passes. */
function rawRequest(srv: RunningServer, text: string, opts: { waitMs?: number; destroyAfterWrite?: boolean } = {}): Promise<number> {
  const port = Number(new URL(srv.base).port);
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress: ABUSER });
    let buf = '';
    const done = (): void => {
      clearTimeout(t);
      sock.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
      resolve(m ? Number(m[1]) : 0);
    };
    const t = setTimeout(done, opts.waitMs ?? 2000);
    sock.on('error', done);
    sock.on('close', done);
    sock.on('data', (b: Buffer) => {
      buf += b.toString('latin1');
      if (/\r\n\r\n/.test(buf)) done();
    });
    sock.on('connect', () => {
      sock.write(text);
      if (opts.destroyAfterWrite) setImmediate(done);
    });
  });
}

function upgradeHead(path: string, headers: Record<string, string>, method = 'GET'): string {
  const base: Record<string, string> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...headers,
  };
  return `${method} ${path} HTTP/1.1\r\n${Object.entries(base)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}

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
    notes: `${iterations} kills at ${results.map((r) => r.killAfter).join('/')} acks; ${hit} lost something${lost > 0 ? `: ${results.flatMap((r) => r.details).slice(0, 2).join('; ')}` : ''}`,
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
    const refused = await lockouts(srv, tally, 10);
    return { scenario: 'lockout', lockouts: refused, fiveXx: tally.fiveXx, notes: `${sent} broken upgrades (5 kinds) at maxConnections ${maxConnections}; answers ${tally.summary()}` };
  } finally {
    await srv.stop();
  }
}

async function flood(srv: RunningServer, durationMs: number): Promise<Row> {
  const tally = new Tally();
  // 1. One address opens and drops connections as fast as it can, 50 at a time.
  const until = Date.now() + durationMs / 2;
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
  let refused = await lockouts(srv, tally);
  // 2. One authenticated bus sender floods GLOBAL; a healthy receiver pings meanwhile.
  const ping = await pinger(srv, tally);
  const sender = await busPeer(srv, tally);
  let sent = 0;
  let senderCut: number | undefined;
  sender.on('close', (code) => (senderCut = code));
  const payload = JSON.stringify({ op: 0, event: 'FLOOD', data: 'x'.repeat(512) });
  const stopAt = Date.now() + durationMs / 2;
  while (Date.now() < stopAt && senderCut === undefined) {
    // Keep the sender's own buffer bounded; the server sees a steady flood.
    if (sender.bufferedAmount < 1 << 20) {
      for (let i = 0; i < 200; i++) sender.send(payload);
      sent += 200;
    }
    await new Promise((r) => setImmediate(r));
  }
  const { rtts, cut } = await ping.stop();
  sender.terminate();
  refused += await lockouts(srv, tally);
  return {
    scenario: 'flood',
    lockouts: refused,
    fiveXx: tally.fiveXx,
    p50: pct(rtts, 50),
    p99: pct(rtts, 99),
    notes: `${opened} connects from one address (answers ${tally.summary() || 'none refused'}); GLOBAL flood ${sent} frames${senderCut !== undefined ? `, sender closed ${senderCut}` : ''}; healthy receiver ${cut ? 'CUT' : 'kept'}`,
  };
}

async function slowloris(srv: RunningServer, durationMs: number): Promise<Row> {
  const tally = new Tally();
  const port = Number(new URL(srv.base).port);
  const head = upgradeHead('/bus', {});
  const socks: net.Socket[] = [];
  let closedByServer = 0;
  for (let i = 0; i < 200; i++) {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: ABUSER });
    s.on('error', () => undefined);
    s.on('close', () => closedByServer++);
    s.on('data', (b: Buffer) => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(b.toString('latin1'));
      if (m) tally.see(Number(m[1]));
    });
    socks.push(s);
  }
  const ping = await pinger(srv, tally);
  let at = 0;
  const drip = setInterval(() => {
    // One more header byte per socket, never the blank line that ends the headers.
    if (at < head.length - 4) for (const s of socks) if (!s.destroyed) s.write(head[at] as string);
    at++;
  }, 100);
  await sleep(durationMs);
  const refused = await lockouts(srv, tally);
  clearInterval(drip);
  const { rtts, cut } = await ping.stop();
  const open = socks.filter((s) => !s.destroyed).length;
  for (const s of socks) s.destroy();
  return {
    scenario: 'slowloris',
    lockouts: refused + (cut ? 1 : 0),
    fiveXx: tally.fiveXx,
    p50: pct(rtts, 50),
    p99: pct(rtts, 99),
    notes: `200 sockets, a header byte each per 100 ms: ${closedByServer} closed by the server, ${open} still open after ${durationMs} ms`,
  };
}

async function slowbody(srv: RunningServer, durationMs: number): Promise<Row> {
  const tally = new Tally();
  const port = Number(new URL(srv.base).port);
  const socks: net.Socket[] = [];
  let closedByServer = 0;
  for (let i = 0; i < 200; i++) {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: ABUSER });
    s.on('error', () => undefined);
    s.on('close', () => closedByServer++);
    s.on('data', (b: Buffer) => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(b.toString('latin1'));
      if (m) tally.see(Number(m[1]));
    });
    s.on('connect', () =>
      s.write(`POST /v2/servers/1/join HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{`),
    );
    socks.push(s);
  }
  const drip = setInterval(() => {
    for (const s of socks) if (!s.destroyed) s.write(' ');
  }, 200);
  await sleep(durationMs);
  const refused = await lockouts(srv, tally);
  clearInterval(drip);
  const open = socks.filter((s) => !s.destroyed).length;
  for (const s of socks) s.destroy();
  return {
    scenario: 'slowbody',
    lockouts: refused,
    fiveXx: tally.fiveXx,
    notes: `200 POSTs, a body byte each per 200 ms: ${closedByServer} closed by the server, ${open} still open after ${durationMs} ms`,
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
    process.stderr.write('usage: npm run chaos -- [--seed N] [--iterations N>=1] [--duration MS>=500] [--only kill9,lockout,flood,slowloris,slowbody,junk]\n');
    process.exit(2);
  }
  const all = ['kill9', 'lockout', 'flood', 'slowloris', 'slowbody', 'junk'];
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
      rows.push({ scenario: name, lockouts: 0, fiveXx: 0, notes: `scenario failed: ${(err as Error).message}` });
    }
    process.stdout.write(`  ${name} done in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);
  };
  try {
    await run('kill9', () => kill9(seed, iterations));
    await run('lockout', () => lockout(dir, rand));
    const timed = ['flood', 'slowloris', 'slowbody', 'junk'].filter((s) => only.includes(s));
    if (timed.length > 0) {
      // One server at the default limits for the timed scenarios, one after another.
      const srv = await startServer({ dataDir: join(dir, 'defaults') });
      try {
        await run('flood', () => flood(srv, duration));
        await run('slowloris', () => slowloris(srv, duration));
        await run('slowbody', () => slowbody(srv, duration));
        await run('junk', () => junk(srv, duration, rand));
        if (srv.proc.exitCode !== null || srv.proc.signalCode !== null) rows.push({ scenario: 'server', lockouts: 1, fiveXx: 0, notes: `the server died: ${srv.stderr().slice(-500)}` });
      } finally {
        await srv.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.stdout.write(`\n${table(rows)}\n\nseed ${seed}\n`);
  const bad = rows.filter((r) => (r.lost ?? 0) > 0 || r.lockouts > 0 || r.fiveXx > 0);
  if (bad.length > 0) {
    process.stdout.write(`FAILED: ${bad.map((r) => r.scenario).join(', ')} (lost, lockouts and 5xx must be 0)\n`);
    process.exitCode = 1;
  }
}

await main();
