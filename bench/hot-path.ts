/**
 * Micro-bench of the bus DIRECT request/reply path inside the server, without sockets:
 * the real BusDialect on the core runtime and a LocalBroker, over real Connections on
 * sockets that only count what they are given (the frames P1 sends, about 150 bytes).
 * One round trip = the request frame in, relayed to the responder, its REPLY in, relayed
 * to the requester: Muster's own work per round trip in bench P1, minus the kernel and
 * `ws`. The floor it is printed against does what the raw ws relay's handler does with
 * the same two frames (text, JSON.parse, a Map look-up, hand the bytes on).
 *
 *   npx tsx bench/hot-path.ts [--rounds 15] [--n 100000]
 *
 * The machine is shared: compare medians of several interleaved runs, before and after.
 * `node --cpu-prof --import tsx bench/hot-path.ts` profiles it.
 */
import type { IncomingMessage } from 'node:http';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Registry } from 'prom-client';
import { LocalBroker } from '../src/cluster/broker.js';
import { SystemClock } from '../src/core/clock.js';
import { Connection } from '../src/core/connection.js';
import type { ConnectionHandler } from '../src/core/dialect.js';
import { Scheduler } from '../src/core/scheduler.js';
import type { Socket } from '../src/core/socket.js';
import { busFactory } from '../src/dialects/bus/index.js';
import { loadConfig } from '../src/index.js';
import { MemoryStore } from '../src/store/memory.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '15' }, n: { type: 'string', default: '100000' } } });
const ROUNDS = Number(values.rounds);
const N = Number(values.n);
const PAIRS = 100;
const PAD = 'x'.repeat(40);

/** A socket that keeps only the last frame it was given. */
class CountingSocket implements Socket {
  last: Buffer | string = '';
  frames = 0;
  readonly bufferedAmount = 0;
  get raw(): this {
    return this;
  }
  get open(): boolean {
    return true;
  }
  sendText(data: Buffer | string): void {
    this.last = data;
    this.frames++;
  }
  close(): void {}
  terminate(): void {}
  ping(): void {}
  cork(): boolean {
    return true;
  }
  uncork(): void {}
  setFrameLimit(): boolean {
    return true;
  }
}

const scheduler = new Scheduler(new SystemClock(), (e) => {
  throw e;
});
// The bus section as Muster resolves it, with a known token and the rate limits on (as in
// P1) but too high to refuse anything here.
const { dialects } = loadConfig({ env: {}, overrides: { log: { level: 'silent' }, dialects: { bus: { enabled: true, token: 'tok', heartbeatInterval: 60_000, maxEventsPerSecond: 1e9, maxEventBytesPerSecond: 1e12 } } } });
const dialect = busFactory.build(dialects.bus, { scheduler, store: new MemoryStore(), broker: new LocalBroker(), logger: pino({ level: 'silent' }), registry: new Registry() }, { secretEquals: (a, b) => a === b });

interface Peer {
  sock: CountingSocket;
  h: ConnectionHandler;
  id: string;
}
let seq = 0;
function peer(): Peer {
  const sock = new CountingSocket();
  const conn = new Connection(sock, { id: `00000000-0000-4000-8000-${String(++seq).padStart(12, '0')}`, dialect: 'bus', remoteAddress: '127.0.0.1', scheduler, maxBufferedBytes: 1 << 24 });
  const h = dialect.accept(conn, { headers: {} } as IncomingMessage);
  h.onMessage(Buffer.from('{"op":1,"data":{"token":"tok"}}'), false);
  const id = (JSON.parse(String(sock.last)) as { data: { id: string } }).data.id;
  return { sock, h, id };
}

interface Pair {
  req: Peer;
  rep: Peer;
  /** Request and reply frames, by id (ids repeat every 1,000 requests, as a client's would cycle). */
  reqs: Buffer[];
  reps: Buffer[];
}
const pairs: Pair[] = Array.from({ length: PAIRS }, (_, i) => {
  const req = peer();
  const rep = peer();
  const ids = Array.from({ length: 1000 }, (_, k) => `${i}-${100_000 + k}`);
  return {
    req,
    rep,
    reqs: ids.map((id) => Buffer.from(`{"op":0,"id":"${id}","event":"REQ","expect_reply":1,"intent":{"target":"DIRECT","identifier":"${rep.id}"},"data":{"pad":"${PAD}"}}`)),
    reps: ids.map((id) => Buffer.from(`{"op":5,"id":"${id}","data":{"pad":"${PAD}"}}`)),
  };
});

/** N round trips through Muster, 100 pairs in turn; a tick boundary every 100 (the corked sockets flush). */
async function muster(): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const p = pairs[i % PAIRS] as Pair;
    const k = Math.floor(i / PAIRS) % 1000;
    p.req.h.onMessage(p.reqs[k] as Buffer, false);
    p.rep.h.onMessage(p.reps[k] as Buffer, false);
    if (i % PAIRS === PAIRS - 1) await null;
  }
  return Number(process.hrtime.bigint() - t0) / N;
}

/** The relay's handler on the same frames: text, parse, look up, hand on. */
const byId = new Map<string, CountingSocket>(pairs.flatMap((p) => [[p.req.id, p.req.sock] as const, [p.rep.id, p.rep.sock] as const]));
function relayHop(data: Buffer, fallback: string): void {
  const msg = JSON.parse(data.toString()) as { intent?: { identifier?: string } };
  const to = msg.intent?.identifier ?? fallback;
  byId.get(to)?.sendText(data);
}
async function floor(): Promise<number> {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const p = pairs[i % PAIRS] as Pair;
    const k = Math.floor(i / PAIRS) % 1000;
    relayHop(p.reqs[k] as Buffer, p.rep.id);
    relayHop(p.reps[k] as Buffer, p.req.id);
    if (i % PAIRS === PAIRS - 1) await null;
  }
  return Number(process.hrtime.bigint() - t0) / N;
}

const m: number[] = [];
const f: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  m.push(await muster());
  f.push(await floor());
}
const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;
const sent = pairs.reduce((s, p) => s + p.req.sock.frames + p.rep.sock.frames, 0);
const errors = pairs.filter((p) => String(p.req.sock.last).includes('"error"')).length;
console.log(`bus DIRECT round trip inside the server (${N} per round, ${ROUNDS} rounds, ${sent} frames out, ${errors} pairs last saw an error):`);
console.log(`  Muster        median ${med(m).toFixed(0)} ns, min ${Math.min(...m).toFixed(0)} ns`);
console.log(`  relay handler median ${med(f).toFixed(0)} ns, min ${Math.min(...f).toFixed(0)} ns`);
console.log(`  difference    ${(med(m) - med(f)).toFixed(0)} ns per round trip`);
