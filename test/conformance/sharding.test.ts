/**
 * Conformance tests for the sharding dialect, written from the contract alone
 * (specs/sharding.md, specs/operations.md, seeds/000-sharding-master-control.md, issue 3),
 * over real sockets and real HTTP, with the ManualClock for every timeout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ShardingHarness, type ShardingServer } from '../support/harness/sharding.js';
import { ADMIN_TOKEN, RawPeer, until } from '../support/server.js';

const KEY = 'key';
const BOT = 'bot';

interface Frame {
  o: number;
  d: Record<string, unknown> | null;
}
type D = Record<string, unknown>;

const OP = {
  INFO: 0,
  FATAL: 1,
  COMMAND: 2,
  OFFLOAD: 3,
  SHUTDOWN: 4,
  INITIALISE: 5,
  CONNECT: 6,
  ERROR: 7,
  ACK: 8,
  HEARTBEAT: 9,
  IDENTIFY: 10,
  CONNECTING: 11,
  CONNECTED: 12,
  IDENTIFY_REQUEST: 13,
  IDENTIFY_GRANT: 14,
  IDENTIFIED: 15,
} as const;

const h = new ShardingHarness({ authorization: KEY, botToken: BOT, shardCount: 16, startupDelay: 1000, expectedControls: 2, identifyMargin: 0 });
const dirs: string[] = [];

const s = (): ShardingServer => h.srv;
const start = (sharding: D = {}, top: D = {}): Promise<ShardingServer> => h.start(sharding, { top });

afterEach(async () => {
  await h.teardown(async () => {
    // Nothing leaks: no connection and no live CONTROL left once every socket is gone.
    const summary = (): D | undefined => s().muster.dialect('sharding')?.summary?.();
    await until(() => summary()?.connections === 0 && summary()?.liveControls === 0);
  });
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const open = (headers: Record<string, string> = { authorization: KEY }): Promise<RawPeer> => h.open({ headers });

async function expectOp(peer: RawPeer, o: number): Promise<D> {
  const f = await peer.next<Frame>();
  expect(f.o, JSON.stringify(f)).toBe(o);
  return (f.d ?? {}) as D;
}

/** Heartbeat round trip: proves earlier frames were processed; frames before the ACK stay queued. */
async function sync(peer: RawPeer): Promise<void> {
  const seq = Math.floor(Math.random() * 1e9);
  peer.send({ o: OP.HEARTBEAT, d: { seq } });
  const skipped: string[] = [];
  for (;;) {
    const raw = await peer.nextRaw();
    const f = JSON.parse(raw) as Frame;
    if (f.o === OP.ACK && (f.d as D | null)?.seq === seq) break;
    skipped.push(raw);
  }
  peer.frames.unshift(...skipped);
}

/** Drains what is queued (up to a round-trip barrier), as parsed frames. */
async function drain(peer: RawPeer): Promise<Frame[]> {
  await peer.barrier();
  return peer.frames.splice(0).map((r) => JSON.parse(r) as Frame);
}

interface Control {
  peer: RawPeer;
  init: D;
  identified: D;
}

async function control(name: string, extra: D = {}): Promise<Control> {
  const peer = await open();
  const init = await expectOp(peer, OP.INITIALISE);
  peer.send({ o: OP.IDENTIFY, d: { name, ...extra } });
  const identified = await expectOp(peer, OP.IDENTIFIED);
  return { peer, init, identified };
}

/** CONNECTING then CONNECTED for the given ranges. */
function connected(peer: RawPeer, shards: unknown): void {
  peer.send({ o: OP.CONNECTING, d: null });
  peer.send({ o: OP.CONNECTED, d: { shards } });
}

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

async function get(url: string): Promise<{ status: number; body: unknown }> {
  const r = await s().muster.http.inject({ method: 'GET', url, headers: admin });
  return { status: r.statusCode, body: r.body ? (JSON.parse(r.body) as unknown) : undefined };
}

async function post(url: string, payload?: unknown): Promise<{ status: number; body: unknown }> {
  const r = await s().muster.http.inject({
    method: 'POST',
    url,
    headers: payload === undefined ? admin : { ...admin, 'content-type': 'application/json' },
    ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
  });
  return { status: r.statusCode, body: r.body ? (JSON.parse(r.body) as unknown) : undefined };
}

async function owners(): Promise<Array<string | null>> {
  const r = await get('/api/v1/sharding/shards');
  expect(r.status).toBe(200);
  return (r.body as Array<{ id: number; owner: string | null }>).sort((a, b) => a.id - b.id).map((x) => x.owner);
}

function expand(ranges: unknown): number[] {
  const out: number[] = [];
  for (const [a, b] of ranges as Array<[number, number]>) for (let i = a; i <= b; i++) out.push(i);
  return out;
}

/** Two CONTROLs (expectedControls 2) brought up sequentially: a gets the first CONNECT. */
async function fleetOfTwo(extraA: D = {}, extraB: D = {}): Promise<{ a: Control; b: Control; ra: unknown; rb: unknown }> {
  const a = await control('a', extraA);
  const b = await control('b', extraB);
  const ca = await expectOp(a.peer, OP.CONNECT);
  connected(a.peer, ca.shards);
  const cb = await expectOp(b.peer, OP.CONNECT);
  connected(b.peer, cb.shards);
  await sync(a.peer);
  await sync(b.peer);
  return { a, b, ra: ca.shards, rb: cb.shards };
}

/** Top-level config for a SQLite store in a fresh data directory (removed after the run), to start again with. */
function sqliteTop(): D {
  const dataDir = mkdtempSync(join(tmpdir(), 'muster-sharding-conf-'));
  dirs.push(dataDir);
  return { dataDir, store: { kind: 'sqlite' } };
}

/** One CONTROL `a` (expectedControls 1) that got every shard and reported them CONNECTED. */
async function soleControl(): Promise<Control> {
  await start({ expectedControls: 1 });
  const a = await control('a');
  const ca = await expectOp(a.peer, OP.CONNECT);
  connected(a.peer, ca.shards);
  await sync(a.peer);
  return a;
}

describe('sharding: connection', () => {
  it('refuses the upgrade with HTTP 401 on a missing or wrong Authorization key, opening no socket', async () => {
    await start();
    await expect(RawPeer.open(h.url)).rejects.toThrow(/401/);
    await expect(RawPeer.open(h.url, { headers: { authorization: 'nope' } })).rejects.toThrow(/401/);
    expect(s().muster.transport.size).toBe(0);
  });

  it('sends INITIALISE at once with token, heartbeat_interval (ms), shard_count, max_concurrency, session_id', async () => {
    await start({ maxConcurrency: 4 });
    const peer = await open();
    const d = await expectOp(peer, OP.INITIALISE);
    expect(d).toMatchObject({ token: BOT, heartbeat_interval: 30000, shard_count: 16, max_concurrency: 4 });
    expect(typeof d.session_id).toBe('string');
    expect((d.session_id as string).length).toBeGreaterThan(0);
  });

  it('answers IDENTIFY with IDENTIFIED {resumed:false, shards, redundant}', async () => {
    await start();
    const a = await control('a');
    expect(a.identified).toMatchObject({ resumed: false, redundant: false });
    expect(Array.isArray(a.identified.shards)).toBe(true);
  });

  it('closes with 4002 when no IDENTIFY arrives within identifyTimeout (10 s)', async () => {
    await start();
    const peer = await open();
    await expectOp(peer, OP.INITIALISE);
    s().clock.advance(9_000);
    expect(await peer.quiet()).toBe(true);
    expect(peer.isClosed).toBe(false);
    s().clock.advance(1_001);
    expect((await peer.waitClose()).code).toBe(4002);
  });

  it('closes a duplicate name with 4003 and keeps the live socket', async () => {
    await start();
    const a = await control('a');
    const dup = await open();
    await expectOp(dup, OP.INITIALISE);
    dup.send({ o: OP.IDENTIFY, d: { name: 'a' } });
    const frames: Frame[] = [];
    const c = await dup.waitClose();
    expect(c.code).toBe(4003);
    frames.push(...dup.frames.map((r) => JSON.parse(r) as Frame));
    expect(frames.some((f) => f.o === OP.IDENTIFIED)).toBe(false);
    await sync(a.peer);
    expect(a.peer.isClosed).toBe(false);
  });

  it('lets a reconnect carrying the live session_id win: old socket closed with 4005', async () => {
    await start();
    const a = await control('a');
    const peer = await open();
    await expectOp(peer, OP.INITIALISE);
    peer.send({ o: OP.IDENTIFY, d: { name: 'a', session_id: a.init.session_id } });
    const d = await expectOp(peer, OP.IDENTIFIED);
    expect(d.resumed).toBe(true);
    expect((await a.peer.waitClose()).code).toBe(4005);
    await sync(peer);
  });
});

describe('sharding: heartbeats', () => {
  it('answers every HEARTBEAT with an ACK echoing d exactly (snowflake-sized numbers too)', async () => {
    await start();
    const a = await control('a');
    a.peer.send('{"o":9,"d":{"seq":870000000000000123}}');
    const raw = await a.peer.nextRaw();
    expect(JSON.parse(raw.replace(/870000000000000123/, '"X"'))).toEqual({ o: OP.ACK, d: { seq: 'X' } });
    expect(raw).toContain('870000000000000123');
    a.peer.send({ o: OP.HEARTBEAT, d: { seq: 7 } });
    expect(await a.peer.next()).toEqual({ o: OP.ACK, d: { seq: 7 } });
    a.peer.send({ o: OP.HEARTBEAT, d: {} });
    expect(await a.peer.next()).toEqual({ o: OP.ACK, d: {} });
  });

  it('closes a CONTROL silent for interval+grace with 4001 and splits its shards across live CONTROLs as OFFLOAD failover', async () => {
    await start({ expectedControls: 3 });
    const a = await control('a');
    const b = await control('b');
    const c = await control('c');
    const all = [a, b, c];
    const ranges: unknown[] = [];
    for (const x of all) {
      const d = await expectOp(x.peer, OP.CONNECT);
      ranges.push(d.shards);
      connected(x.peer, d.shards);
      await sync(x.peer);
    }
    s().clock.advance(30_000);
    await sync(b.peer);
    await sync(c.peer);
    s().clock.advance(15_001);
    expect((await a.peer.waitClose()).code).toBe(4001);
    const ob = await expectOp(b.peer, OP.OFFLOAD);
    const oc = await expectOp(c.peer, OP.OFFLOAD);
    expect(ob.reason).toBe('failover');
    expect(oc.reason).toBe('failover');
    const moved = [...expand(ob.shards), ...expand(oc.shards)].sort((x, y) => x - y);
    expect(moved).toEqual(expand(ranges[0]));
    expect(expand(ob.shards).length).toBeGreaterThan(0);
    expect(expand(oc.shards).length).toBeGreaterThan(0);
    const own = await owners();
    for (const i of expand(ob.shards)) expect(own[i]).toBe('b');
    for (const i of expand(oc.shards)) expect(own[i]).toBe('c');
  });

  it('does not close a CONTROL that heartbeats in time', async () => {
    await start();
    const a = await control('a');
    for (let i = 0; i < 4; i++) {
      s().clock.advance(30_000);
      await sync(a.peer);
    }
    expect(a.peer.isClosed).toBe(false);
  });
});

describe('sharding: start-up', () => {
  it('sends the first CONNECT startupDelay after start when expectedControls is not reached', async () => {
    await start({ expectedControls: 0 });
    const a = await control('a');
    expect(await a.peer.quiet()).toBe(true);
    s().clock.advance(1_000);
    const d = await expectOp(a.peer, OP.CONNECT);
    expect(d).toEqual({ shardRange: [0, 15], shards: [[0, 15]], redundant: false });
  });

  it('sends the first CONNECT as soon as expectedControls have identified', async () => {
    await start({ startupDelay: 45_000, expectedControls: 2 });
    const a = await control('a');
    expect(await a.peer.quiet()).toBe(true);
    const b = await control('b');
    const d = await expectOp(a.peer, OP.CONNECT);
    expect(d.redundant).toBe(false);
    expect(b.peer.frames.length).toBe(0);
  });

  it('splits shards into contiguous ranges weighted by capacity', async () => {
    await start();
    const a = await control('a', { capacity: 3 });
    const b = await control('b', { capacity: 1 });
    const ca = await expectOp(a.peer, OP.CONNECT);
    connected(a.peer, ca.shards);
    const cb = await expectOp(b.peer, OP.CONNECT);
    const sa = expand(ca.shards);
    const sb = expand(cb.shards);
    expect(sa.length).toBe(12);
    expect(sb.length).toBe(4);
    expect([...sa, ...sb].sort((x, y) => x - y)).toEqual([...Array(16).keys()]);
    expect(ca.shardRange).toEqual([sa[0], sa[sa.length - 1]]);
    expect(cb.shardRange).toEqual([sb[0], sb[sb.length - 1]]);
    expect((ca.shards as unknown[]).length).toBe(1);
  });

  it('keeps redundancy standbys: CONNECT {shardRange:[], shards:[], redundant:true}, and failover goes whole to the standby', async () => {
    await start({ redundancy: 1, expectedControls: 3 });
    const a = await control('a');
    const b = await control('b');
    const c = await control('c');
    const seen = new Map<string, D>();
    const byName: Record<string, Control> = { a, b, c };
    while (seen.size < 3) {
      await until(() => Object.entries(byName).some(([n, x]) => !seen.has(n) && x.peer.frames.length > 0));
      for (const [n, x] of Object.entries(byName)) {
        if (seen.has(n) || x.peer.frames.length === 0) continue;
        const d = await expectOp(x.peer, OP.CONNECT);
        seen.set(n, d);
        connected(x.peer, d.shards);
        await sync(x.peer);
      }
    }
    const standbys = [...seen.entries()].filter(([, d]) => d.redundant === true);
    expect(standbys.length).toBe(1);
    const [standbyName, sd] = standbys[0] as [string, D];
    expect(sd).toEqual({ shardRange: [], shards: [], redundant: true });
    const active = [...seen.entries()].filter(([, d]) => d.redundant === false);
    expect(active.flatMap(([, d]) => expand(d.shards)).sort((x, y) => x - y)).toEqual([...Array(16).keys()]);
    const [victimName, vd] = active[0] as [string, D];
    const [otherName] = active[1] as [string, D];
    // Everyone but the victim heartbeats; the victim goes silent.
    s().clock.advance(30_000);
    await sync((byName[standbyName] as Control).peer);
    await sync((byName[otherName] as Control).peer);
    s().clock.advance(15_001);
    expect((await (byName[victimName] as Control).peer.waitClose()).code).toBe(4001);
    const off = await expectOp((byName[standbyName] as Control).peer, OP.OFFLOAD);
    expect(off.reason).toBe('failover');
    expect(expand(off.shards)).toEqual(expand(vd.shards));
    expect(await (byName[otherName] as Control).peer.quiet()).toBe(true);
  });

  it('sequential: the next CONNECT waits for CONNECTING then CONNECTED', async () => {
    await start();
    const a = await control('a');
    const b = await control('b');
    const ca = await expectOp(a.peer, OP.CONNECT);
    expect(await b.peer.quiet()).toBe(true);
    a.peer.send({ o: OP.CONNECTING, d: null });
    await sync(a.peer);
    expect(await b.peer.quiet()).toBe(true);
    a.peer.send({ o: OP.CONNECTED, d: { shards: ca.shards } });
    const cb = await expectOp(b.peer, OP.CONNECT);
    expect([...expand(ca.shards), ...expand(cb.shards)].sort((x, y) => x - y)).toEqual([...Array(16).keys()]);
  });

  it('sequential: a CONTROL that does not reach CONNECTED within connectTimeout is treated as dead', async () => {
    await start({ connectTimeout: 5_000 });
    const a = await control('a');
    const b = await control('b');
    await expectOp(a.peer, OP.CONNECT);
    a.peer.send({ o: OP.CONNECTING, d: null });
    await sync(a.peer);
    s().clock.advance(5_001);
    const closed = await a.peer.waitClose();
    expect(closed.code).toBe(4001);
    // b ends up owning every shard, through CONNECT and/or OFFLOAD.
    const got: number[] = [];
    for (const f of await (async () => {
      await until(() => b.peer.frames.length > 0);
      return drain(b.peer);
    })()) {
      if (f.o === OP.CONNECT || f.o === OP.OFFLOAD) got.push(...expand((f.d as D).shards));
    }
    const own = await owners();
    expect(own.every((o) => o === 'b')).toBe(true);
    expect(got.sort((x, y) => x - y)).toEqual([...Array(16).keys()]);
  });

  it('parallel: every CONTROL advertising identify-queue gets its CONNECT at once', async () => {
    await start({ startup: 'parallel' });
    const a = await control('a', { features: ['identify-queue'] });
    const b = await control('b', { features: ['identify-queue'] });
    const ca = await expectOp(a.peer, OP.CONNECT);
    const cb = await expectOp(b.peer, OP.CONNECT);
    expect([...expand(ca.shards), ...expand(cb.shards)].sort((x, y) => x - y)).toEqual([...Array(16).keys()]);
  });
});

describe('sharding: identify queue', () => {
  it('grants one identify per bucket (shard_id % maxConcurrency) per identifyWindow', async () => {
    await start({ maxConcurrency: 2, expectedControls: 1 });
    const a = await control('a');
    await expectOp(a.peer, OP.CONNECT);
    a.peer.send({ o: OP.CONNECTING, d: null });
    a.peer.send({ o: OP.IDENTIFY_REQUEST, d: { shard_id: 0 } });
    a.peer.send({ o: OP.IDENTIFY_REQUEST, d: { shard_id: 2 } });
    a.peer.send({ o: OP.IDENTIFY_REQUEST, d: { shard_id: 1 } });
    const g1 = await expectOp(a.peer, OP.IDENTIFY_GRANT);
    const g2 = await expectOp(a.peer, OP.IDENTIFY_GRANT);
    expect([g1.shard_id, g2.shard_id].sort()).toEqual([0, 1]);
    await sync(a.peer);
    expect(a.peer.frames.length).toBe(0);
    s().clock.advance(4_000);
    await sync(a.peer);
    expect(a.peer.frames.length).toBe(0);
    s().clock.advance(1_000);
    expect(await expectOp(a.peer, OP.IDENTIFY_GRANT)).toEqual({ shard_id: 2 });
  });

  it('grants only to the current owner: a non-owner gets ERROR 4009 and no grant, and stays open', async () => {
    await start({ expectedControls: 1 });
    const a = await control('a');
    const ca = await expectOp(a.peer, OP.CONNECT);
    expect(expand(ca.shards).length).toBe(16);
    const b = await control('b');
    b.peer.send({ o: OP.IDENTIFY_REQUEST, d: { shard_id: 3 } });
    const e = await expectOp(b.peer, OP.ERROR);
    expect(e.code).toBe(4009);
    await sync(b.peer);
    expect(b.peer.frames.length).toBe(0);
    expect(await b.peer.quiet()).toBe(true);
    s().clock.advance(5_000);
    expect(await b.peer.quiet()).toBe(true);
    // The owner still gets its grant.
    a.peer.send({ o: OP.IDENTIFY_REQUEST, d: { shard_id: 3 } });
    expect(await expectOp(a.peer, OP.IDENTIFY_GRANT)).toEqual({ shard_id: 3 });
  });
});

describe('sharding: protocol violations', () => {
  it('IDENTIFY twice → ERROR 4009, socket stays open', async () => {
    await start();
    const a = await control('a');
    a.peer.send({ o: OP.IDENTIFY, d: { name: 'a' } });
    const e = await expectOp(a.peer, OP.ERROR);
    expect(e.code).toBe(4009);
    expect(typeof e.message).toBe('string');
    await sync(a.peer);
    expect(a.peer.isClosed).toBe(false);
  });

  it('CONNECTED for shards not given → ERROR 4009 and SHUTDOWN for those shards, socket stays open', async () => {
    await start();
    const { a, ra, rb } = await fleetOfTwo();
    a.peer.send({ o: OP.CONNECTED, d: { shards: [...(ra as unknown[]), ...(rb as unknown[])] } });
    const frames: Frame[] = [];
    await until(() => a.peer.frames.length >= 2);
    frames.push(...(await drain(a.peer)));
    const err = frames.find((f) => f.o === OP.ERROR);
    const sd = frames.find((f) => f.o === OP.SHUTDOWN);
    expect(err?.d?.code).toBe(4009);
    expect(expand(sd?.d?.shards)).toEqual(expand(rb));
    await sync(a.peer);
    expect(a.peer.isClosed).toBe(false);
    const own = await owners();
    for (const i of expand(rb)) expect(own[i]).toBe('b');
  });

  const bad: Array<[string, string]> = [
    ['bad JSON', '{"o":9,'],
    ['an array', '[9,{}]'],
    ['a missing opcode', '{"d":{}}'],
    ['a missing d (documented: d must be an object or null)', '{"o":9}'],
    ['a d that is not an object', '{"o":9,"d":5}'],
    ['a string opcode', '{"o":"9","d":{}}'],
    ['an unknown opcode', '{"o":99,"d":{}}'],
    ['a M→C opcode', '{"o":5,"d":{}}'],
    ['a wrong IDENTIFY payload', '{"o":10,"d":{"name":42}}'],
    ['an IDENTIFY_REQUEST without shard_id', '{"o":13,"d":{}}'],
  ];
  for (const [what, raw] of bad) {
    it(`${what} → ERROR then close 4004`, async () => {
      await start();
      const peer = await open();
      await expectOp(peer, OP.INITIALISE);
      if (!raw.startsWith('{"o":10')) {
        peer.send({ o: OP.IDENTIFY, d: { name: 'x' } });
        await expectOp(peer, OP.IDENTIFIED);
      }
      peer.send(raw);
      const e = await expectOp(peer, OP.ERROR);
      expect(typeof e.code).toBe('number');
      expect((await peer.waitClose()).code).toBe(4004);
    });
  }
});

describe('sharding: disconnects and reconnects', () => {
  it('re-attaches a CONTROL that returns within reconnectWindow with its session_id: resumed, nothing moves', async () => {
    await start();
    const { a, b, ra } = await fleetOfTwo();
    a.peer.close();
    await a.peer.waitClose();
    s().clock.advance(20_000);
    const peer = await open();
    await expectOp(peer, OP.INITIALISE);
    peer.send({ o: OP.IDENTIFY, d: { name: 'a', session_id: a.init.session_id } });
    const d = await expectOp(peer, OP.IDENTIFIED);
    expect(d.resumed).toBe(true);
    expect(expand(d.shards)).toEqual(expand(ra));
    s().clock.advance(20_000);
    await sync(peer);
    await sync(b.peer);
    expect(await b.peer.quiet()).toBe(true);
    expect(peer.frames.length).toBe(0);
    const own = await owners();
    for (const i of expand(ra)) expect(own[i]).toBe('a');
  });

  it('re-attaches a CONTROL that returns within reconnectWindow with its shards', async () => {
    await start();
    const { a, b, ra } = await fleetOfTwo();
    a.peer.close();
    await a.peer.waitClose();
    s().clock.advance(10_000);
    const again = await control('a', { shards: ra });
    expect(again.identified.resumed).toBe(true);
    expect(expand(again.identified.shards)).toEqual(expand(ra));
    s().clock.advance(25_000);
    await sync(b.peer);
    await sync(again.peer);
    expect(b.peer.frames.length).toBe(0);
    expect(again.peer.frames.length).toBe(0);
  });

  it('offloads a disconnected CONTROL after reconnectWindow; when it comes back claiming those shards it gets SHUTDOWN', async () => {
    await start();
    const { a, b, ra } = await fleetOfTwo();
    a.peer.close();
    await a.peer.waitClose();
    s().clock.advance(29_000);
    await sync(b.peer);
    expect(b.peer.frames.length).toBe(0);
    s().clock.advance(1_001);
    const off = await expectOp(b.peer, OP.OFFLOAD);
    expect(off.reason).toBe('failover');
    expect(expand(off.shards)).toEqual(expand(ra));
    expect((await owners()).every((o) => o === 'b')).toBe(true);

    const peer = await open();
    await expectOp(peer, OP.INITIALISE);
    peer.send({ o: OP.IDENTIFY, d: { name: 'a', shards: ra, session_id: a.init.session_id } });
    await until(() => peer.frames.length >= 2);
    const frames = await drain(peer);
    const idf = frames.find((f) => f.o === OP.IDENTIFIED);
    const sd = frames.find((f) => f.o === OP.SHUTDOWN);
    expect(idf?.d?.resumed).toBe(false);
    expect(expand(sd?.d?.shards)).toEqual(expand(ra));
    expect((await owners()).every((o) => o === 'b')).toBe(true);
  });
});

describe('sharding: FATAL and halt', () => {
  it('FATAL → SHUTDOWN to every CONTROL, halted, nothing starts until POST resume', async () => {
    await start();
    const { a, b } = await fleetOfTwo();
    a.peer.send({ o: OP.FATAL, d: { code: 4014, message: 'Disallowed intents' } });
    const sa = await expectOp(a.peer, OP.SHUTDOWN);
    const sb = await expectOp(b.peer, OP.SHUTDOWN);
    expect(sa.shards).toBeUndefined();
    expect(sb.shards).toBeUndefined();
    expect(((await get('/api/v1/sharding')).body as D).halted).toBe(true);
    // Documented reading of close code 4006: the halted fleet's sockets are closed with it.
    for (const p of [a.peer, b.peer]) {
      await p.barrier();
      if (p.ws.readyState !== p.ws.OPEN) expect((await p.waitClose()).code).toBe(4006);
    }
    // Nothing starts while halted, not even for a CONTROL that identifies now.
    const late = await open();
    await expectOp(late, OP.INITIALISE);
    late.send({ o: OP.IDENTIFY, d: { name: 'late' } });
    s().clock.advance(2_000);
    await late.quiet();
    const lateFrames = late.frames.splice(0).map((r) => JSON.parse(r) as Frame);
    expect(lateFrames.filter((f) => f.o === OP.CONNECT || f.o === OP.OFFLOAD)).toEqual([]);
    if (late.isClosed) expect((await late.waitClose()).code).toBe(4006);
    const r = await post('/api/v1/sharding/resume');
    expect(r.status).toBeLessThan(300);
    expect(((await get('/api/v1/sharding')).body as D).halted).toBe(false);
    // After resume the fleet starts again.
    const x = await control('x');
    const y = await control('y');
    s().clock.advance(1_000);
    await until(() => x.peer.frames.length + y.peer.frames.length > 0);
    const all = [...(await drain(x.peer)), ...(await drain(y.peer))];
    expect(all.some((f) => f.o === OP.CONNECT)).toBe(true);
  });

  it('POST halt sends SHUTDOWN to every CONTROL', async () => {
    await start();
    const { a, b } = await fleetOfTwo();
    const r = await post('/api/v1/sharding/halt');
    expect(r.status).toBeLessThan(300);
    expect((await expectOp(a.peer, OP.SHUTDOWN)).shards).toBeUndefined();
    expect((await expectOp(b.peer, OP.SHUTDOWN)).shards).toBeUndefined();
    expect(((await get('/api/v1/sharding')).body as D).halted).toBe(true);
  });
});

describe('sharding: admin API', () => {
  it('GET /api/v1/sharding returns the fleet view; admin token required', async () => {
    await start({ maxConcurrency: 2 });
    await fleetOfTwo({ capacity: 1 });
    const unauth = await s().muster.http.inject({ method: 'GET', url: '/api/v1/sharding' });
    expect(unauth.statusCode).toBe(401);
    const r = await get('/api/v1/sharding');
    expect(r.status).toBe(200);
    const body = r.body as D;
    expect(body).toMatchObject({ halted: false, shardCount: 16, maxConcurrency: 2 });
    expect(typeof body.budgetRemaining).toBe('number');
    const controls = body.controls as D[];
    expect(controls.map((c) => c.name).sort()).toEqual(['a', 'b']);
    for (const c of controls) {
      for (const k of ['name', 'sessionId', 'state', 'shards', 'redundant', 'capacity', 'lastHeartbeatMs']) expect(c).toHaveProperty(k);
      expect(c.redundant).toBe(false);
      expect(c.capacity).toBe(1);
    }
  });

  it('GET /api/v1/sharding/shards lists [{id, owner, state}]; owner is set when CONNECT is sent', async () => {
    await start();
    const a = await control('a');
    const b = await control('b');
    const ca = await expectOp(a.peer, OP.CONNECT);
    const r = await get('/api/v1/sharding/shards');
    const list = r.body as Array<D>;
    expect(list.length).toBe(16);
    for (const x of list) {
      expect(Object.keys(x).sort()).toEqual(['id', 'owner', 'state']);
    }
    const own = await owners();
    for (const i of expand(ca.shards)) expect(own[i]).toBe('a');
    for (let i = 0; i < 16; i++) if (!expand(ca.shards).includes(i)) expect(own[i]).toBeNull();
    connected(a.peer, ca.shards);
    await expectOp(b.peer, OP.CONNECT);
    expect((await owners()).every((o) => o !== null)).toBe(true);
  });

  it('POST controls/:name/command relays COMMAND {command, args}', async () => {
    await start();
    const { a } = await fleetOfTwo();
    const r = await post('/api/v1/sharding/controls/a/command', { command: 'restart_shard', args: { shard_id: 3 } });
    expect(r.status).toBeLessThan(300);
    expect(await expectOp(a.peer, OP.COMMAND)).toEqual({ command: 'restart_shard', args: { shard_id: 3 } });
    // `shards` in the contract is [[first,last],…]; a flat list of ids is accepted too.
    for (const shards of [[[0, 3]], [0, 1, 2]]) {
      const r2 = await post('/api/v1/sharding/controls/a/command', { command: 'restart_cluster', args: { shards } });
      expect(r2.status).toBeLessThan(300);
      expect(await expectOp(a.peer, OP.COMMAND)).toEqual({ command: 'restart_cluster', args: { shards } });
    }
    const missing = await post('/api/v1/sharding/controls/nobody/command', { command: 'restart_shard', args: { shard_id: 1 } });
    expect(missing.status).toBe(404);
  });

  it('POST rebalance is make-before-break: OFFLOAD to the new owner, SHUTDOWN to the old only after CONNECTED', async () => {
    const a = await soleControl();
    const c = await control('c');
    // Documented: a CONTROL that arrives after start-up gets a standby CONNECT.
    await c.peer.quiet();
    for (const f of await drain(c.peer)) {
      expect(f).toEqual({ o: OP.CONNECT, d: { shardRange: [], shards: [], redundant: true } });
      connected(c.peer, []);
      await sync(c.peer);
    }
    const r = await post('/api/v1/sharding/rebalance');
    expect(r.status).toBeLessThan(300);
    const off = await expectOp(c.peer, OP.OFFLOAD);
    expect(off.reason).toBe('rebalance');
    const moved = expand(off.shards);
    expect(moved.length).toBe(8);
    // Before CONNECTED: old owner keeps them, no SHUTDOWN yet.
    await sync(a.peer);
    expect(a.peer.frames.length).toBe(0);
    let own = await owners();
    for (const i of moved) expect(own[i]).toBe('a');
    connected(c.peer, off.shards);
    const sd = await expectOp(a.peer, OP.SHUTDOWN);
    expect(expand(sd.shards)).toEqual(moved);
    own = await owners();
    for (const i of moved) expect(own[i]).toBe('c');
    for (let i = 0; i < 16; i++) if (!moved.includes(i)) expect(own[i]).toBe('a');
  });
});

describe('sharding: persistence and shutdown', () => {
  it('assignments survive a MASTER restart: CONTROLs that reconnect with their shards are kept', async () => {
    const top = sqliteTop();
    await start({}, top);
    const { a, b, ra, rb } = await fleetOfTwo();
    await s().stop();
    expect((await a.peer.waitClose()).code).toBe(1001);
    expect((await b.peer.waitClose()).code).toBe(1001);
    h.release();

    await start({ expectedControls: 2 }, top);
    const a2 = await control('a', { shards: ra });
    const b2 = await control('b', { shards: rb });
    expect(expand(a2.identified.shards)).toEqual(expand(ra));
    expect(expand(b2.identified.shards)).toEqual(expand(rb));
    s().clock.advance(2_000);
    await sync(a2.peer);
    await sync(b2.peer);
    const frames = [...(await drain(a2.peer)), ...(await drain(b2.peer))];
    expect(frames.filter((f) => f.o === OP.SHUTDOWN || f.o === OP.OFFLOAD)).toEqual([]);
    // A CONNECT, if any, must repeat the same assignment.
    for (const f of frames.filter((x) => x.o === OP.CONNECT)) expect([expand(ra), expand(rb)]).toContainEqual(expand((f.d as D).shards));
    const own = await owners();
    for (const i of expand(ra)) expect(own[i]).toBe('a');
    for (const i of expand(rb)) expect(own[i]).toBe('b');
  });

  it('halted state is persisted across a restart', async () => {
    const top = sqliteTop();
    await start({ expectedControls: 1 }, top);
    await post('/api/v1/sharding/halt');
    await h.release().stop();
    await start({ expectedControls: 1 }, top);
    expect(((await get('/api/v1/sharding')).body as D).halted).toBe(true);
    const a = await open();
    await expectOp(a, OP.INITIALISE);
    a.send({ o: OP.IDENTIFY, d: { name: 'a' } });
    s().clock.advance(2_000);
    await a.quiet();
    const frames = a.frames.splice(0).map((r) => JSON.parse(r) as Frame);
    expect(frames.filter((f) => f.o === OP.CONNECT || f.o === OP.OFFLOAD)).toEqual([]);
  });

  it('closes every CONTROL with 1001 when MASTER shuts down', async () => {
    await start();
    const a = await control('a');
    const pending = await open();
    await expectOp(pending, OP.INITIALISE);
    await s().stop();
    expect((await a.peer.waitClose()).code).toBe(1001);
    expect((await pending.waitClose()).code).toBe(1001);
    h.release();
  });
});

describe('sharding: more edges', () => {
  it('is not dead at interval+grace−1 ms, dead just after', async () => {
    await start({ expectedControls: 0 });
    const a = await control('a');
    s().clock.advance(44_999);
    await sync(a.peer);
    await drain(a.peer); // the start-up CONNECT
    // That heartbeat reset the deadline; now stay silent.
    s().clock.advance(44_999);
    expect(await a.peer.quiet()).toBe(true);
    expect(a.peer.isClosed).toBe(false);
    s().clock.advance(2);
    expect((await a.peer.waitClose()).code).toBe(4001);
  });

  it('a CONTROL declared dead (4001) that comes back claiming its old shards gets SHUTDOWN for them and is treated as new', async () => {
    await start();
    const { a, b, ra } = await fleetOfTwo();
    s().clock.advance(30_000);
    await sync(b.peer);
    s().clock.advance(15_001);
    expect((await a.peer.waitClose()).code).toBe(4001);
    const off = await expectOp(b.peer, OP.OFFLOAD);
    expect(expand(off.shards)).toEqual(expand(ra));
    const peer = await open();
    await expectOp(peer, OP.INITIALISE);
    peer.send({ o: OP.IDENTIFY, d: { name: 'a', shards: ra, session_id: a.init.session_id } });
    await until(() => peer.frames.length >= 2);
    const frames = await drain(peer);
    expect(frames.find((f) => f.o === OP.IDENTIFIED)?.d?.resumed).toBe(false);
    expect(expand(frames.find((f) => f.o === OP.SHUTDOWN)?.d?.shards)).toEqual(expand(ra));
    expect((await owners()).every((o) => o === 'b')).toBe(true);
  });

  it('HEARTBEAT with d null or before IDENTIFY is ACKed; ERROR and INFO from a CONTROL do not close', async () => {
    await start();
    const peer = await open();
    await expectOp(peer, OP.INITIALISE);
    peer.send({ o: OP.HEARTBEAT, d: { seq: 1 } });
    expect(await peer.next()).toEqual({ o: OP.ACK, d: { seq: 1 } });
    peer.send({ o: OP.IDENTIFY, d: { name: 'a' } });
    await expectOp(peer, OP.IDENTIFIED);
    peer.send({ o: OP.HEARTBEAT, d: null });
    expect(await peer.next()).toEqual({ o: OP.ACK, d: null });
    peer.send('{"o":0,"d":{"shards":[{"id":0,"status":"READY","latency_ms":42,"guilds":870000000000000123}],"load":0.5,"memory_mb":512}}');
    peer.send({ o: OP.ERROR, d: { code: 1, message: 'client side trouble' } });
    await sync(peer);
    expect(peer.frames.length).toBe(0);
    expect(peer.isClosed).toBe(false);
  });

  it('a socket that has not identified does not count towards expectedControls', async () => {
    await start({ startupDelay: 45_000 });
    const a = await control('a');
    const idle = await open();
    await expectOp(idle, OP.INITIALISE);
    expect(await a.peer.quiet()).toBe(true);
    idle.send({ o: OP.IDENTIFY, d: { name: 'b' } });
    await expectOp(idle, OP.IDENTIFIED);
    await expectOp(a.peer, OP.CONNECT);
  });

  it('stops granting once the sessionStartLimit budget is spent, and reports it', async () => {
    await start({ expectedControls: 1, maxConcurrency: 1, identifyWindow: 1000, sessionStartLimit: 2 });
    const a = await control('a');
    await expectOp(a.peer, OP.CONNECT);
    a.peer.send({ o: OP.CONNECTING, d: null });
    for (const id of [0, 1, 2]) a.peer.send({ o: OP.IDENTIFY_REQUEST, d: { shard_id: id } });
    expect(await expectOp(a.peer, OP.IDENTIFY_GRANT)).toEqual({ shard_id: 0 });
    s().clock.advance(1_000);
    expect(await expectOp(a.peer, OP.IDENTIFY_GRANT)).toEqual({ shard_id: 1 });
    s().clock.advance(1_000);
    await sync(a.peer);
    s().clock.advance(5_000);
    await sync(a.peer);
    expect(a.peer.frames.length).toBe(0);
    expect(((await get('/api/v1/sharding')).body as D).budgetRemaining).toBe(0);
  });

  it('make-before-break: the incoming owner may get identify grants before it reports CONNECTED', async () => {
    await soleControl();
    const c = await control('c');
    await c.peer.quiet();
    for (const f of await drain(c.peer)) {
      if (f.o === OP.CONNECT) connected(c.peer, []);
    }
    await sync(c.peer);
    expect((await post('/api/v1/sharding/rebalance')).status).toBeLessThan(300);
    const off = await expectOp(c.peer, OP.OFFLOAD);
    const first = expand(off.shards)[0] as number;
    c.peer.send({ o: OP.CONNECTING, d: null });
    c.peer.send({ o: OP.IDENTIFY_REQUEST, d: { shard_id: first } });
    expect(await expectOp(c.peer, OP.IDENTIFY_GRANT)).toEqual({ shard_id: first });
    // The outgoing owner keeps them until then.
    expect((await owners())[first]).toBe('a');
  });

  it('a non-UTF-8 text frame closes with 1007', async () => {
    await start();
    const a = await control('a');
    a.peer.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await a.peer.waitClose()).code).toBe(1007);
  });
});

describe('sharding: reconciliation after a restart', () => {
  it('a CONTROL that claims shards stored for another CONTROL gets SHUTDOWN for them', async () => {
    const top = sqliteTop();
    await start({}, top);
    const { a, b, ra, rb } = await fleetOfTwo();
    await s().stop();
    await a.peer.waitClose();
    await b.peer.waitClose();
    h.release();
    await start({}, top);
    const a2 = await control('a', { shards: ra });
    const peer = await open();
    await expectOp(peer, OP.INITIALISE);
    peer.send({ o: OP.IDENTIFY, d: { name: 'b', shards: [...(rb as unknown[]), ...(ra as unknown[])] } });
    await until(() => peer.frames.some((r) => (JSON.parse(r) as Frame).o === OP.SHUTDOWN));
    const frames = await drain(peer);
    expect(expand(frames.find((f) => f.o === OP.SHUTDOWN)?.d?.shards)).toEqual(expand(ra));
    await sync(a2.peer);
    expect(a2.peer.frames.filter((r) => [OP.SHUTDOWN, OP.OFFLOAD].includes((JSON.parse(r) as Frame).o as 3 | 4))).toEqual([]);
    const own = await owners();
    for (const i of expand(ra)) expect(own[i]).toBe('a');
    for (const i of expand(rb)) expect(own[i]).toBe('b');
  });
});
