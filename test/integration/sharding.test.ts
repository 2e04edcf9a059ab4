import pino from 'pino';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import { RawPeer } from '../support/server.js';
import {
  BOT_TOKEN,
  connected,
  KEY,
  expectErrorClose,
  expectOp,
  expectNoLeaks,
  owners,
  shards,
  ShardingHarness,
  sync,
  type Frame,
  type ShardingServer,
} from '../support/harness/sharding.js';

const h = new ShardingHarness();
const start = (cfg: Record<string, unknown> = {}): Promise<ShardingServer> => h.start(cfg);
const ctl = (name: string, extra: Record<string, unknown> = {}) => h.control(name, extra);
const raw = (key: string | null = KEY): Promise<RawPeer> => h.connect(key);

/** Advances the clock in heartbeat-sized steps, heartbeating (and syncing) every peer on the way. */
async function live(ms: number, ...ps: RawPeer[]): Promise<void> {
  const s = h.srv;
  let left = ms;
  while (left > 0) {
    const dt = Math.min(left, 30_000);
    s.clock.advance(dt);
    left -= dt;
    for (const p of ps) if (!p.isClosed) await sync(p);
  }
}

afterEach(() => h.teardown(expectNoLeaks));

describe('sharding: connection', () => {
  it('refuses an upgrade without Authorization with HTTP 401 (no socket)', async () => {
    await start();
    await expect(RawPeer.open(h.srv.wsUrl)).rejects.toThrow(/401/);
    expect(h.srv.muster.transport.size).toBe(0);
  });

  it('refuses a wrong key with HTTP 401', async () => {
    await start();
    await expect(RawPeer.open(h.srv.wsUrl, { headers: { authorization: 'nope' } })).rejects.toThrow(/401/);
    await expect(RawPeer.open(h.srv.wsUrl, { headers: { authorization: `${KEY}x` } })).rejects.toThrow(/401/);
  });

  it('accepts the key raw, or after "Bearer "', async () => {
    await start();
    await raw(KEY);
    await raw(`Bearer ${KEY}`);
  });

  it('sends INITIALISE the moment the socket opens', async () => {
    await start({ shardCount: 24, maxConcurrency: 4 });
    const p = await raw();
    const f = await p.next<Frame>();
    expect(f).toEqual({
      o: 5,
      d: {
        token: BOT_TOKEN,
        heartbeat_interval: 30000,
        shard_count: 24,
        max_concurrency: 4,
        session_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        heartbeat_grace: 15000,
        reconnect_window: 30000,
        fence_margin: 5000,
      },
    });
  });

  it('gives every connection its own session_id', async () => {
    await start();
    const a = await (await raw()).next<Frame<{ session_id: string }>>();
    const b = await (await raw()).next<Frame<{ session_id: string }>>();
    expect(a.d.session_id).not.toBe(b.d.session_id);
  });

  it('answers IDENTIFY with IDENTIFIED {resumed, shards, redundant}', async () => {
    await start();
    const { identified } = await ctl('host-1', { capacity: 2, features: ['identify-queue'] });
    expect(identified).toEqual({ o: 15, d: { resumed: false, shards: [], redundant: false } });
  });

  it('closes with ERROR then 4002 when no IDENTIFY comes within identifyTimeout', async () => {
    await start();
    const p = await raw();
    await expectOp(p, 5);
    await sync(p);
    h.srv.clock.advance(9_999);
    expect(await p.quiet()).toBe(true);
    h.srv.clock.advance(1);
    await expectErrorClose(p, 4002);
  });

  it('closes a second CONTROL with the same name with 4003, and keeps the first', async () => {
    await start();
    const a = await ctl('host-1');
    const b = await raw();
    await expectOp(b, 5);
    b.send({ o: 10, d: { name: 'host-1' } });
    await expectErrorClose(b, 4003);
    await sync(a.peer);
  });

  it("lets a reconnect carrying the live session's session_id win; the old socket closes with 4005", async () => {
    await start();
    const a = await ctl('host-1');
    const sid = (a.init.d as { session_id: string }).session_id;
    const b = await raw();
    await expectOp(b, 5);
    b.send({ o: 10, d: { name: 'host-1', session_id: sid } });
    expect(await expectOp(b, 15)).toEqual({ resumed: true, shards: [], redundant: false });
    await expectErrorClose(a.peer, 4005);
    await sync(b);
  });

  it('refuses 4003 when the session_id is not the live one', async () => {
    await start();
    await ctl('host-1');
    const b = await raw();
    await expectOp(b, 5);
    b.send({ o: 10, d: { name: 'host-1', session_id: 'not-it' } });
    await expectErrorClose(b, 4003);
  });

  it('answers IDENTIFY on an identified socket with ERROR 4009 and keeps it open', async () => {
    await start();
    const a = await ctl('host-1');
    a.peer.send({ o: 10, d: { name: 'host-1' } });
    expect(await expectOp(a.peer, 7)).toEqual({ code: 4009, message: expect.stringContaining('already identified') });
    await sync(a.peer);
  });

  it('answers frames that need an identity before IDENTIFY with ERROR 4009', async () => {
    await start();
    const p = await raw();
    await expectOp(p, 5);
    p.send({ o: 13, d: { shard_id: 0 } });
    expect(await expectOp(p, 7)).toMatchObject({ code: 4009 });
    p.send({ o: 12, d: { shards: [] } });
    expect(await expectOp(p, 7)).toMatchObject({ code: 4009 });
    await sync(p);
  });
});

describe('sharding: an unset botToken', () => {
  it('warns once, when the first CONTROL identifies, not at start', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (l: string) => void lines.push(l) });
    await h.start({ botToken: undefined }, { logger });
    const warned = (): string[] => lines.filter((l) => l.includes('botToken'));
    expect(warned()).toEqual([]);
    const p = await raw();
    expect((await p.next<Frame>()).d).toMatchObject({ token: '' });
    expect(warned()).toEqual([]);
    p.send({ o: 10, d: { name: 'a' } });
    await expectOp(p, 15);
    expect(warned()).toHaveLength(1);
    expect(JSON.parse(warned()[0] as string)).toMatchObject({ level: 40, control: 'a' });
    await ctl('b');
    expect(warned()).toHaveLength(1);
  });
});

describe('sharding: bad input', () => {
  const cases: Array<[string, string]> = [
    ['malformed JSON', '{"o":9,'],
    ['a JSON array', '[9,null]'],
    ['a JSON number', '42'],
    ['JSON null', 'null'],
    ['a missing "o"', '{"d":null}'],
    ['"o" as a string', '{"o":"9","d":null}'],
    ['a fractional "o"', '{"o":9.5,"d":null}'],
    ['a missing "d"', '{"o":9}'],
    ['"d" as an array', '{"o":9,"d":[]}'],
    ['"d" as a string', '{"o":9,"d":"x"}'],
    ['an unknown opcode', '{"o":42,"d":null}'],
    ['a MASTER-only opcode (INITIALISE)', '{"o":5,"d":{}}'],
    ['a MASTER-only opcode (IDENTIFY_GRANT)', '{"o":14,"d":{"shard_id":0}}'],
    ['IDENTIFY without a name', '{"o":10,"d":{}}'],
    ['IDENTIFY with a bad capacity', '{"o":10,"d":{"name":"a","capacity":"big"}}'],
    ['IDENTIFY with bad shards', '{"o":10,"d":{"name":"a","shards":[[3,1]]}}'],
    ['CONNECTED without shards', '{"o":12,"d":{}}'],
    ['IDENTIFY_REQUEST with a string shard_id', '{"o":13,"d":{"shard_id":"0"}}'],
    ['FATAL without a code', '{"o":1,"d":{}}'],
    ['INFO with a bad shards list', '{"o":0,"d":{"shards":"all"}}'],
  ];
  for (const [name, frame] of cases) {
    it(`answers ${name} with ERROR then 4004`, async () => {
      await start();
      const p = await raw();
      await expectOp(p, 5);
      p.send(frame);
      const d = await expectErrorClose(p, 4004);
      expect(d.message.length).toBeGreaterThan(0);
    });
  }

  it('answers bad input from an identified CONTROL the same way', async () => {
    await start();
    const a = await ctl('host-1');
    a.peer.send('{"o":99,"d":null}');
    expect((await expectErrorClose(a.peer, 4004)).message).toMatch(/unknown opcode 99/);
  });

  it('answers a binary frame with ERROR then 4004', async () => {
    await start();
    const p = await raw();
    await expectOp(p, 5);
    p.ws.send(Buffer.from('{"o":9,"d":null}'), { binary: true });
    await expectErrorClose(p, 4004);
  });

  it('closes non-UTF-8 text with 1007 and no ERROR', async () => {
    await start();
    const p = await raw();
    await expectOp(p, 5);
    p.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await p.waitClose()).code).toBe(1007);
    expect(p.frames).toEqual([]);
  });

  it('a bad frame closes only its own socket; other CONTROLs keep their state', async () => {
    await start({ expectedControls: 2 });
    const a = await ctl('a');
    const b = await ctl('b');
    await expectOp(a.peer, 6);
    b.peer.send('nope');
    await expectErrorClose(b.peer, 4004);
    await connected(a.peer, [[0, 7]]);
    // b lost its turn but keeps its plan for reconnectWindow.
    expect(await owners(h.srv)).toEqual([
      ['a', 0, 7],
      [null, 8, 15],
    ]);
    expect((await shards(h.srv))[8]).toEqual({ id: 8, owner: null, state: 'pending' });
    expect(a.peer.frames).toEqual([]);
  });
});

describe('sharding: heartbeats and death', () => {
  it('ACKs every HEARTBEAT, echoing d (numbers beyond 2^53 keep their digits)', async () => {
    await start();
    const a = await ctl('a');
    a.peer.send('{"o":9,"d":{"seq":870000000000000123}}');
    expect(await a.peer.nextRaw()).toBe('{"o":8,"d":{"seq":870000000000000123}}');
    a.peer.send({ o: 9, d: null });
    expect(await a.peer.next()).toEqual({ o: 8, d: null });
  });

  it('closes a CONTROL that misses heartbeatInterval + heartbeatGrace with 4001 and offloads its shards at once', async () => {
    await start({ expectedControls: 2, redundancy: 1 });
    const a = await ctl('a');
    const b = await ctl('b');
    expect(await expectOp(a.peer, 6)).toEqual({ shardRange: [0, 15], shards: [[0, 15]], redundant: false });
    await connected(a.peer, [[0, 15]]);
    expect(await expectOp(b.peer, 6)).toEqual({ shardRange: [], shards: [], redundant: true });
    await connected(b.peer, []);
    h.srv.clock.advance(30_000);
    await sync(b.peer); // b heartbeats; a stays silent
    h.srv.clock.advance(14_999);
    expect(await a.peer.quiet()).toBe(true);
    h.srv.clock.advance(1);
    expect(await expectOp(a.peer, 7)).toEqual({ code: 4001, message: expect.stringMatching(/HEARTBEAT/) });
    expect(await a.peer.waitClose()).toEqual({ code: 4001, reason: 'Dead connection' });
    expect(await expectOp(b.peer, 3)).toEqual({ shards: [[0, 15]], reason: 'failover', from: 'a' });
    expect(await owners(h.srv)).toEqual([['b', 0, 15]]);
  });

  it('keeps a heartbeating CONTROL alive', async () => {
    await start({ startupDelay: 1_000_000_000 });
    const a = await ctl('a');
    await live(200_000, a.peer);
    expect(a.peer.isClosed).toBe(false);
  });
});

describe('sharding: disconnects and reconnects', () => {
  async function fleet() {
    const { a, b } = await h.fleet();
    return { a, b, sid: (a.init.d as { session_id: string }).session_id };
  }

  it('keeps the shards of a disconnected CONTROL for reconnectWindow; it re-attaches with its session_id and nothing moves', async () => {
    const { a, b, sid } = await fleet();
    a.peer.close();
    await a.peer.waitClose();
    await live(25_000, b.peer);
    expect((await shards(h.srv))[0]).toEqual({ id: 0, owner: 'a', state: 'disconnected' });
    const a2 = await raw();
    await expectOp(a2, 5);
    a2.send({ o: 10, d: { name: 'a', session_id: sid } });
    expect(await expectOp(a2, 15)).toEqual({ resumed: true, shards: [[0, 7]], redundant: false });
    await live(60_000, a2, b.peer);
    expect(await owners(h.srv)).toEqual([
      ['a', 0, 7],
      ['b', 8, 15],
    ]);
    expect(b.peer.frames).toEqual([]);
  });

  it('re-attaches a CONTROL that brings its shards instead of a session_id', async () => {
    const { a } = await fleet();
    a.peer.close();
    await a.peer.waitClose();
    const a2 = await raw();
    await expectOp(a2, 5);
    a2.send({ o: 10, d: { name: 'a', shards: [[0, 7]] } });
    expect(await expectOp(a2, 15)).toEqual({ resumed: true, shards: [[0, 7]], redundant: false });
  });

  it('offloads the shards once reconnectWindow passes', async () => {
    const { a, b } = await fleet();
    a.peer.close();
    await a.peer.waitClose();
    await live(29_000, b.peer);
    expect(b.peer.frames).toEqual([]);
    h.srv.clock.advance(1_000);
    expect(await expectOp(b.peer, 3)).toEqual({ shards: [[0, 7]], reason: 'failover', from: 'a' });
  });

  it('sends SHUTDOWN to a CONTROL declared dead that comes back claiming shards now owned by another', async () => {
    const { a, b, sid } = await fleet();
    h.srv.clock.advance(30_000);
    await sync(b.peer);
    h.srv.clock.advance(15_000);
    await expectErrorClose(a.peer, 4001);
    expect(await expectOp(b.peer, 3)).toEqual({ shards: [[0, 7]], reason: 'failover', from: 'a' });
    const a2 = await raw();
    await expectOp(a2, 5);
    a2.send({ o: 10, d: { name: 'a', session_id: sid, shards: [[0, 7]] } });
    expect(await expectOp(a2, 15)).toEqual({ resumed: false, shards: [], redundant: false });
    expect(await expectOp(a2, 4)).toEqual({ reason: expect.any(String), shards: [[0, 7]] });
    expect(await owners(h.srv)).toEqual([['b', 0, 15]]);
  });
});

describe('sharding: assignment and start-up', () => {
  it('sends the first CONNECT startupDelay after start', async () => {
    await start();
    const a = await ctl('a');
    await live(30_000, a.peer);
    h.srv.clock.advance(14_999);
    expect(await a.peer.quiet()).toBe(true);
    h.srv.clock.advance(1);
    expect(await expectOp(a.peer, 6)).toEqual({ shardRange: [0, 15], shards: [[0, 15]], redundant: false });
  });

  it('sends it as soon as expectedControls have identified', async () => {
    await start({ expectedControls: 2 });
    const a = await ctl('a');
    await sync(a.peer);
    expect(a.peer.frames).toEqual([]);
    await ctl('b');
    expect(await expectOp(a.peer, 6)).toEqual({ shardRange: [0, 7], shards: [[0, 7]], redundant: false });
  });

  it('splits into contiguous ranges weighted by capacity', async () => {
    await start({ expectedControls: 2 });
    const a = await ctl('a', { capacity: 1 });
    const b = await ctl('b', { capacity: 3 });
    expect(await expectOp(a.peer, 6)).toEqual({ shardRange: [0, 3], shards: [[0, 3]], redundant: false });
    await connected(a.peer, [[0, 3]]);
    expect(await expectOp(b.peer, 6)).toEqual({ shardRange: [4, 15], shards: [[4, 15]], redundant: false });
  });

  it('sequential: the next CONTROL gets CONNECT only after CONNECTING and CONNECTED', async () => {
    await start({ expectedControls: 2 });
    const a = await ctl('a');
    const b = await ctl('b');
    await expectOp(a.peer, 6);
    a.peer.send({ o: 11, d: null });
    await sync(a.peer);
    expect((await shards(h.srv))[0]).toEqual({ id: 0, owner: 'a', state: 'connecting' });
    expect(await b.peer.quiet()).toBe(true);
    a.peer.send({ o: 12, d: { shards: [[0, 7]] } });
    expect(await expectOp(b.peer, 6)).toEqual({ shardRange: [8, 15], shards: [[8, 15]], redundant: false });
    expect((await shards(h.srv))[0]).toEqual({ id: 0, owner: 'a', state: 'connected' });
  });

  it('gives redundancy standbys CONNECT {shardRange: [], shards: [], redundant: true}', async () => {
    await start({ expectedControls: 3, redundancy: 1 });
    const a = await ctl('a');
    const b = await ctl('b');
    const c = await ctl('c');
    await expectOp(a.peer, 6);
    await connected(a.peer, [[0, 7]]);
    await expectOp(b.peer, 6);
    await connected(b.peer, [[8, 15]]);
    expect(await expectOp(c.peer, 6)).toEqual({ shardRange: [], shards: [], redundant: true });
  });

  it('treats a CONTROL that is not CONNECTED within connectTimeout as dead', async () => {
    await start({ expectedControls: 2, redundancy: 1 });
    const a = await ctl('a');
    const b = await ctl('b');
    await expectOp(a.peer, 6);
    a.peer.send({ o: 11, d: null });
    await live(119_000, a.peer, b.peer);
    expect(b.peer.frames).toEqual([]);
    h.srv.clock.advance(1_000);
    expect(await expectOp(a.peer, 4)).toEqual({ reason: expect.stringContaining('connectTimeout') });
    await expectErrorClose(a.peer, 4001);
    expect(await expectOp(b.peer, 6)).toEqual({ shardRange: [], shards: [], redundant: true });
    expect(await expectOp(b.peer, 3)).toEqual({ shards: [[0, 15]], reason: 'failover', from: 'a' });
  });

  it('parallel: every CONTROL with identify-queue gets its CONNECT at once', async () => {
    await start({ expectedControls: 2, startup: 'parallel' });
    const a = await ctl('a', { features: ['identify-queue'] });
    const b = await ctl('b', { features: ['identify-queue'] });
    expect(await expectOp(a.peer, 6)).toEqual({ shardRange: [0, 7], shards: [[0, 7]], redundant: false });
    expect(await expectOp(b.peer, 6)).toEqual({ shardRange: [8, 15], shards: [[8, 15]], redundant: false });
  });

  it('failover without a standby splits the dead set by capacity across the live CONTROLs', async () => {
    await start({ expectedControls: 3, shardCount: 12 });
    const a = await ctl('a', { capacity: 2 });
    const b = await ctl('b', { capacity: 1 });
    const c = await ctl('c', { capacity: 3 });
    expect(await expectOp(a.peer, 6)).toMatchObject({ shards: [[0, 3]] });
    await connected(a.peer, [[0, 3]]);
    expect(await expectOp(b.peer, 6)).toMatchObject({ shards: [[4, 5]] });
    await connected(b.peer, [[4, 5]]);
    expect(await expectOp(c.peer, 6)).toMatchObject({ shards: [[6, 11]] });
    await connected(c.peer, [[6, 11]]);
    a.peer.close();
    await a.peer.waitClose();
    await live(30_000, b.peer, c.peer);
    expect(await expectOp(b.peer, 3)).toEqual({ shards: [[0, 0]], reason: 'failover', from: 'a' });
    expect(await expectOp(c.peer, 3)).toEqual({ shards: [[1, 3]], reason: 'failover', from: 'a' });
  });
});

describe('sharding: protocol violations that do not close', () => {
  const running = () => h.fleet();

  it('CONNECTED listing shards not given: ERROR 4009 and SHUTDOWN for those shards', async () => {
    const { a } = await running();
    a.peer.send({ o: 12, d: { shards: [[7, 9]] } });
    expect(await expectOp(a.peer, 7)).toEqual({ code: 4009, message: expect.stringContaining('8-9') });
    expect(await expectOp(a.peer, 4)).toEqual({ reason: expect.any(String), shards: [[8, 9]] });
    await sync(a.peer);
    expect(await owners(h.srv)).toEqual([
      ['a', 0, 7],
      ['b', 8, 15],
    ]);
  });

  it('IDENTIFY_REQUEST for a shard it does not own: ERROR 4009 and no grant', async () => {
    const { a } = await running();
    a.peer.send({ o: 13, d: { shard_id: 12 } });
    expect(await expectOp(a.peer, 7)).toEqual({ code: 4009, message: expect.stringContaining('shard 12') });
    a.peer.send({ o: 13, d: { shard_id: 500 } });
    expect(await expectOp(a.peer, 7)).toMatchObject({ code: 4009 });
    await live(10_000, a.peer);
    expect(a.peer.frames).toEqual([]);
  });
});

describe('sharding: the identify queue', () => {
  it('grants one IDENTIFY per bucket per identifyWindow, across CONTROLs, only to owners', async () => {
    await start({ expectedControls: 2, startup: 'parallel', maxConcurrency: 2 });
    const a = await ctl('a', { features: ['identify-queue'] });
    const b = await ctl('b', { features: ['identify-queue'] });
    await expectOp(a.peer, 6);
    await expectOp(b.peer, 6);
    a.peer.send({ o: 13, d: { shard_id: 0 } }); // bucket 0
    expect(await expectOp(a.peer, 14)).toEqual({ shard_id: 0 });
    a.peer.send({ o: 13, d: { shard_id: 1 } }); // bucket 1
    expect(await expectOp(a.peer, 14)).toEqual({ shard_id: 1 });
    b.peer.send({ o: 13, d: { shard_id: 8 } }); // bucket 0 again
    await sync(b.peer);
    expect(b.peer.frames).toEqual([]);
    h.srv.clock.advance(4_999);
    expect(await b.peer.quiet()).toBe(true);
    h.srv.clock.advance(1);
    expect(await expectOp(b.peer, 14)).toEqual({ shard_id: 8 });
  });

  it('stops granting once sessionStartLimit is spent, and reports the fleet as budget-exhausted', async () => {
    await start({ expectedControls: 1, maxConcurrency: 16, sessionStartLimit: 3 });
    const a = await ctl('a');
    await expectOp(a.peer, 6);
    for (const id of [0, 1, 2, 3]) a.peer.send({ o: 13, d: { shard_id: id } });
    for (const id of [0, 1, 2]) expect(await expectOp(a.peer, 14)).toEqual({ shard_id: id });
    await live(60_000, a.peer);
    expect(a.peer.frames).toEqual([]);
    const res = await fetch(`${h.srv.httpBase}/api/v1/sharding`, { headers: { authorization: 'Bearer admin-secret-for-tests' } });
    expect(await res.json()).toMatchObject({ budgetRemaining: 0, budgetExhausted: true });
    expect(await h.srv.store.get('sharding', 'budget')).toMatchObject({ used: 3 });
  });
});

describe('sharding: FATAL', () => {
  it('halts the fleet: SHUTDOWN to every CONTROL, close 4006, nothing starts until resume', async () => {
    await start({ expectedControls: 2 });
    const a = await ctl('a');
    const b = await ctl('b');
    await expectOp(a.peer, 6);
    a.peer.send({ o: 1, d: { code: 4004, message: 'Authentication failed.' } });
    for (const p of [a.peer, b.peer]) {
      expect(await expectOp(p, 4)).toEqual({ reason: expect.stringContaining('4004') });
      await expectErrorClose(p, 4006);
    }
    expect(await h.srv.store.get('sharding', 'fleet')).toMatchObject({ halted: true });
    const c = await raw();
    await expectOp(c, 5);
    c.send({ o: 10, d: { name: 'a' } });
    expect(await expectOp(c, 4)).toMatchObject({ reason: expect.stringContaining('halted') });
    await expectErrorClose(c, 4006);
  });
});

describe('sharding: shutdown', () => {
  it('closes CONTROLs with 1001 when MASTER stops, and keeps the assignment', async () => {
    const s = await start({ expectedControls: 1 });
    const a = await ctl('a');
    await expectOp(a.peer, 6);
    await s.stop();
    expect((await a.peer.waitClose()).code).toBe(1001);
    expect(await s.store.get('sharding', 'assignment')).toMatchObject({ started: true, controls: { a: { shards: [[0, 15]] } } });
    h.release();
  });
});

// A raw `ws` socket that does not follow the protocol: closes before identifying.
it('sharding: a socket that closes before IDENTIFY leaves nothing behind', async () => {
  await start();
  const ws = new WebSocket(h.srv.wsUrl, { headers: { authorization: KEY } });
  await new Promise((r) => ws.once('message', r));
  ws.terminate();
});
