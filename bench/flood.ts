/**
 * Does a healthy bus receiver survive one flooding sender? Starts a Muster server (a
 * child process), connects RECEIVERS healthy services here (each reads everything, at
 * most --mbps MB/s like a peer on a real link, and measures how long a probe EVENT takes
 * to reach it) and one flooder in another process
 * that sends 30 KB GLOBAL EVENTs as fast as its socket allows. Runs twice: with the
 * sender rate limit off, and at the defaults (maxEventsPerSecond 1000,
 * maxEventBytesPerSecond 1 MiB). Prints, per run: receivers cut (4008), flood frames
 * each receiver got, the flooder's RATE_LIMITED answers, and the probe latency.
 *
 *   npx tsx bench/flood.ts [--seconds 5] [--receivers 20] [--mbps 8]
 */
import WebSocket from 'ws';
import { ProcessGroup } from './lib/child.js';
import { BUS_TOKEN } from './lib/constants.js';
import { childArgs, sleep } from './lib/ipc.js';
import { startServer } from './lib/servers.js';
import { fmt } from './lib/stats.js';

const args = childArgs();
const seconds = Number(args.seconds ?? 5);
const receivers = Number(args.receivers ?? 20);
const mbps = Number(args.mbps ?? 8);
const FRAME_BYTES = 30_000;

interface Receiver {
  ws: WebSocket;
  floods: number;
  closed: number | null;
  latencies: number[];
}

async function service(url: string, name: string): Promise<WebSocket> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  ws.send(JSON.stringify({ op: 1, data: { token: BUS_TOKEN, name } }));
  await new Promise<void>((resolve) => ws.once('message', () => resolve()));
  return ws;
}

async function run(tag: string, label: string, bus: Record<string, unknown>): Promise<string> {
  const group = new ProcessGroup();
  try {
    const server = await startServer(group, 'muster', { bus, label: `flood-${tag}` });
    const rs: Receiver[] = [];
    for (let i = 0; i < receivers; i++) {
      const r: Receiver = { ws: await service(server.url, `r${i}`), floods: 0, closed: null, latencies: [] };
      r.ws.on('message', (d: Buffer) => {
        if (d.includes('"PROBE"')) {
          const m = JSON.parse(d.toString()) as { data: number };
          r.latencies.push(performance.now() - m.data);
        } else if (d.includes('"FLOOD"')) r.floods++;
        else if (d.equals(PING)) r.ws.send(PONG);
      });
      r.ws.on('close', (code) => (r.closed = code));
      throttle(r.ws, mbps * 1e6);
      rs.push(r);
    }
    const prober = await service(server.url, 'prober');
    const { child: flooder } = await group.start({ name: `flood-${tag}-flooder`, script: 'clients/flooder.ts' });
    const flood = flooder.call<{ sent: number; rateLimited: number; closed: number | null }>(
      'flood',
      { url: server.url, token: BUS_TOKEN, bytes: FRAME_BYTES, ms: seconds * 1000 },
      seconds * 1000 + 30_000,
    );
    const end = performance.now() + seconds * 1000;
    let i = 0;
    while (performance.now() < end) {
      const to = rs[i++ % rs.length] as Receiver;
      const name = `r${(i - 1) % rs.length}`;
      if (to.closed === null) prober.send(JSON.stringify({ op: 0, event: 'PROBE', data: performance.now(), intent: { target: 'DIRECT', identifier: name } }));
      await sleep(20);
    }
    const f = await flood;
    await sleep(500);
    const cut = rs.filter((r) => r.closed === 4008).length;
    const lat = rs.flatMap((r) => r.latencies).sort((a, b) => a - b);
    const floods = rs.map((r) => r.floods).sort((a, b) => a - b);
    prober.terminate();
    for (const r of rs) r.ws.terminate();
    return (
      `| ${label} | ${cut} of ${receivers} | ${fmt(f.sent)} | ${fmt(f.rateLimited)} | ${fmt(floods[0] ?? 0)}–${fmt(floods.at(-1) ?? 0)} | ` +
      `${lat.length ? fmt(percentile(lat, 0.5)) : '–'} / ${lat.length ? fmt(percentile(lat, 0.99)) : '–'} ms |`
    );
  } finally {
    await group.closeAll();
  }
}

/** Reads at most `bytesPerSecond` from the socket (in 50 ms slices), as a peer on a slower link would. */
function throttle(ws: WebSocket, bytesPerSecond: number): void {
  const sock = (ws as unknown as { _socket: import('node:net').Socket })._socket;
  const slice = bytesPerSecond / 20;
  let used = 0;
  const t = setInterval(() => {
    used = 0;
    if (sock.isPaused()) sock.resume();
  }, 50);
  t.unref();
  sock.on('data', (d: Buffer) => {
    used += d.length;
    if (used >= slice) sock.pause();
  });
  ws.once('close', () => clearInterval(t));
}

const PING = Buffer.from('{"op":3}');
const percentile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
const PONG = '{"op":4}';

const rows = [
  await run('off', 'limit off', { maxEventsPerSecond: 0, maxEventBytesPerSecond: 0 }),
  await run('default', 'defaults (1000 EVENTs/s, 1 MiB/s)', {}),
];
console.log(`\nOne flooder, ${FRAME_BYTES}-byte GLOBAL EVENTs for ${seconds} s, ${receivers} receivers reading up to ${mbps} MB/s each, maxBufferedBytes 4 MiB\n`);
console.log('| sender limit | receivers cut (4008) | flood frames sent | RATE_LIMITED answers | flood frames per receiver | probe latency p50 / p99 |');
console.log('|---|---|---|---|---|---|');
for (const r of rows) console.log(r);
