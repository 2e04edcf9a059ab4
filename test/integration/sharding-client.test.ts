import type { AddressInfo } from 'node:net';
import type { IIdentifyThrottler } from '@discordjs/ws';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { ManualClock } from '../../src/core/clock.js';
import { fenceTiming, IdentifySlotError, MusterIdentifyThrottler, ShardingControl, shardIdsOf, type ShardingControlOptions } from '../../src/client/index.js';
import type { Range } from '../../src/protocols/sharding/ranges.js';
import { serverRoundTrip, until } from '../support/server.js';
import { admin, expectNoLeaks, KEY, owners, shards, ShardingHarness } from '../support/harness/sharding.js';

const h = new ShardingHarness();
/** One turn of the event loop (pending I/O callbacks and promise chains run), not a timed wait. */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
/** Two server ping round trips: whatever the clients sent in answer to earlier frames has been handled. */
const roundTrips = async (): Promise<void> => {
  await serverRoundTrip((h.srv).muster);
  await serverRoundTrip((h.srv).muster);
};
const controls: ShardingControl[] = [];

interface Probe {
  control: ShardingControl;
  starts: Range[][];
  stops: Array<{ ranges: Range[]; reason: string }>;
}

function make(name: string, over: Partial<ShardingControlOptions> = {}, clock?: ManualClock): Probe {
  const probe: Probe = { control: undefined as unknown as ShardingControl, starts: [], stops: [] };
  probe.control = new ShardingControl({
    url: h.srv.wsUrl,
    authorization: KEY,
    name,
    clock: clock ?? h.srv.clock,
    reconnect: { minMs: 100, maxMs: 200, random: () => 0.5 },
    start: (r) => {
      probe.starts.push(r);
    },
    stop: (r, ctx) => {
      probe.stops.push({ ranges: r, reason: ctx.reason });
    },
    ...over,
  });
  controls.push(probe.control);
  return probe;
}

afterEach(async () => {
  for (const c of controls.splice(0)) await c.close();
  await h.teardown(expectNoLeaks);
});

/** A MASTER expecting two CONTROLs, a and b, both connected, with all 16 shards connected. */
async function twoServing(): Promise<{ a: Probe; b: Probe }> {
  await h.start({ expectedControls: 2 });
  const a = make('a');
  const b = make('b');
  await a.control.connect();
  await b.control.connect();
  await until(() => h.srv.dialect().summary().connectedShards === 16);
  return { a, b };
}

describe('ShardingControl against Muster', () => {
  it('identifies, is started, reports CONNECTING/CONNECTED, and heartbeats', async () => {
    await h.start({ expectedControls: 2 });
    const a = make('a', { capacity: 2 });
    const b = make('b');
    expect(await a.control.connect()).toEqual({ resumed: false, shards: [], redundant: false });
    await b.control.connect();
    expect(a.control.initialise).toMatchObject({ token: 'bot-token-for-tests', shard_count: 16, heartbeat_interval: 30000 });
    await until(() => a.starts.length === 1);
    expect(a.starts[0]).toEqual([[0, 10]]);
    // a's CONNECTED lets b start.
    await until(() => b.starts.length === 1);
    expect(b.starts[0]).toEqual([[11, 15]]);
    await until(() => h.srv.dialect().summary().connectedShards === 16);
    expect(a.control.connected).toEqual([[0, 10]]);
    for (let i = 0; i < 3; i++) {
      const seen = a.control.stats.framesIn;
      h.srv.clock.advance(30_000);
      await until(() => h.srv.dialect().state.controls.get('a')?.lastHeartbeat === h.srv.clock.now());
      await until(() => a.control.stats.framesIn > seen); // the ACK
    }
    expect(a.control.identified).toBe(true);
    expect(a.stops).toEqual([]);
  });

  it('waits for identify grants: one per bucket per window, fleet-wide', async () => {
    await h.start({ expectedControls: 1, startup: 'parallel', maxConcurrency: 2 });
    const granted: number[] = [];
    const a = make('a', {
      start: async (ranges, ctx) => {
        for (const id of shardIdsOf(ranges).slice(0, 4)) {
          await a.control.identifySlot(id, ctx.signal);
          granted.push(id);
        }
      },
    });
    await a.control.connect();
    await until(() => granted.length === 2);
    expect(granted).toEqual([0, 1]);
    await roundTrips();
    expect(granted).toEqual([0, 1]);
    h.srv.clock.advance(5_000);
    await until(() => granted.length === 4);
    expect(granted).toEqual([0, 1, 2, 3]);
  });

  it('parallel start-up brings N shards up in about ceil(N / max_concurrency) identify windows', async () => {
    await h.start({ expectedControls: 2, startup: 'parallel', maxConcurrency: 4, shardCount: 16 });
    const grants: Array<[number, number]> = [];
    const mk = (name: string): Probe => {
      const p = make(name, {
        start: async (ranges, ctx) => {
          await Promise.all(shardIdsOf(ranges).map((id) => p.control.identifySlot(id, ctx.signal).then(() => grants.push([id, h.srv.clock.now()]))));
        },
      });
      return p;
    };
    const a = mk('a');
    const b = mk('b');
    await a.control.connect();
    await b.control.connect();
    const t0 = h.srv.clock.now();
    for (let w = 1; w <= 4; w++) {
      await until(() => grants.length === 4 * w);
      if (w < 4) h.srv.clock.advance(5_000);
    }
    await until(() => h.srv.dialect().summary().connectedShards === 16);
    expect(h.srv.clock.now() - t0).toBe(15_000); // ceil(16 / 4) = 4 windows: at 0, 5, 10 and 15 s
    const perWindow = new Map<number, number[]>();
    for (const [id, t] of grants) perWindow.set(t, [...(perWindow.get(t) ?? []), id % 4]);
    for (const buckets of perWindow.values()) expect(new Set(buckets).size).toBe(buckets.length);
  });

  it('withdraws a request with IDENTIFY_CANCEL when its last wait aborts: no grant, no session start', async () => {
    await h.start({ expectedControls: 1, maxConcurrency: 1, sessionStartLimit: 10 });
    const a = make('a');
    await a.control.connect();
    await until(() => a.starts.length === 1);
    const granted: number[] = [];
    a.control.on('grant', (id: number) => granted.push(id));
    await a.control.identifySlot(0);
    const ac = new AbortController();
    const p1 = a.control.identifySlot(1, ac.signal).catch(() => 'aborted');
    const p2 = a.control.identifySlot(2);
    await until(() => h.srv.dialect().state.queue.waiting.length === 2);
    ac.abort();
    expect(await p1).toBe('aborted');
    await until(() => h.srv.dialect().state.queue.waiting.length === 1);
    expect(h.srv.dialect().state.queue.waiting).toEqual([{ shard: 2, control: 'a' }]);
    h.srv.clock.advance(5_000);
    await p2;
    expect(granted).toEqual([0, 2]);
    expect(h.srv.dialect().summary().budgetRemaining).toBe(8);
  });

  it('identifySlot rejects when aborted, and when the shard is stopped', async () => {
    await h.start({ expectedControls: 1, sessionStartLimit: 0 });
    const a = make('a');
    await a.control.connect();
    await until(() => a.starts.length === 1);
    const ac = new AbortController();
    const p1 = a.control.identifySlot(0, ac.signal);
    ac.abort();
    await expect(p1).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(a.control.identifySlot(99)).rejects.toMatchObject({ code: 'STOPPED' });
    const p2 = expect(a.control.identifySlot(1)).rejects.toBeInstanceOf(IdentifySlotError);
    await admin(h.srv, 'POST', '/api/v1/sharding/halt');
    await p2;
  });

  it('stops shards on SHUTDOWN, starts them on OFFLOAD, restarts them on COMMAND', async () => {
    const { a, b } = await twoServing();
    expect((await admin(h.srv, 'POST', '/api/v1/sharding/controls/a/command', { command: 'restart_shard', args: { shard_id: 2 } })).status).toBe(202);
    await until(() => a.stops.length === 1 && a.starts.length === 2);
    expect(a.stops[0]).toEqual({ ranges: [[2, 2]], reason: 'command restart_shard' });
    expect(a.starts[1]).toEqual([[2, 2]]);
    // Rebalance two shards from a to b: b starts them, then a stops them.
    await admin(h.srv, 'POST', '/api/v1/sharding/rebalance', { to: 'b', shards: [[6, 7]] });
    await until(() => a.stops.length === 2);
    expect(b.starts.at(-1)).toEqual([[6, 7]]);
    expect(a.stops[1]).toEqual({ ranges: [[6, 7]], reason: 'rebalance' });
    expect(a.control.running).toEqual([[0, 5]]);
    expect(await owners(h.srv)).toEqual([
      ['a', 0, 5],
      ['b', 6, 15],
    ]);
  });

  it('sends INFO from its callback', async () => {
    await h.start();
    const a = make('a', { info: () => ({ load: 0.25, memory_mb: 300 }), infoInterval: 10_000 });
    await a.control.connect();
    h.srv.clock.advance(10_000);
    await until(() => h.srv.dialect().state.controls.get('a')?.info !== null);
    expect(JSON.parse(h.srv.dialect().state.controls.get('a')?.info ?? 'null')).toEqual({ load: 0.25, memory_mb: 300 });
  });

  it('reconnects with its session_id and shards after a drop; nothing moves', async () => {
    const { a, b } = await twoServing();
    const sid = a.control.sessionId;
    const identified: unknown[] = [];
    a.control.on('identified', (d) => identified.push(d));
    const conn = h.srv.muster.transport.connections().find((c) => c.identity === 'a');
    expect(conn?.id).toBe(h.srv.dialect().state.controls.get('a')?.conn);
    expect(conn).toBeDefined();
    h.srv.muster.transport.kick(conn!.id);
    await until(() => h.srv.dialect().state.controls.get('a')?.conn === null);
    h.srv.clock.advance(150); // the client's backoff
    await until(() => identified.length === 1);
    expect(identified[0]).toEqual({ resumed: true, shards: [[0, 7]], redundant: false });
    expect(a.control.sessionId).not.toBe(sid);
    expect(a.stops).toEqual([]);
    expect(b.starts).toHaveLength(1);
    expect((await shards(h.srv)).every((s) => s.state === 'connected')).toBe(true);
  });

  it('stops every shard at once when closed with 4001, and comes back as new', async () => {
    await h.start({ expectedControls: 1, heartbeatInterval: 1_000_000 });
    const a = make('a', { heartbeatGrace: 0 });
    await a.control.connect();
    await until(() => h.srv.dialect().summary().connectedShards === 16);
    const d = h.srv.dialect();
    const rec = d.state.controls.get('a');
    // The server's deadline passes before the client's next heartbeat.
    h.srv.muster.transport.get(rec!.conn!)?.conn.close(4001, 'Dead connection');
    await until(() => a.stops.length === 1);
    expect(a.stops[0]).toEqual({ ranges: [[0, 15]], reason: 'declared dead by MASTER' });
    expect(a.control.sessionId).toBeUndefined();
  });

  it('stops its shards and retries later when the fleet halts (4006); resumes after the operator', async () => {
    await h.start({ expectedControls: 1 });
    const a = make('a', { haltedRetryDelay: 1_000 });
    await a.control.connect();
    await until(() => h.srv.dialect().summary().connectedShards === 16);
    const closes: number[] = [];
    a.control.on('close', (code: number) => closes.push(code));
    a.control.fatal(4014, 'Disallowed intents');
    await until(() => closes.includes(4006));
    expect(a.stops).toEqual([{ ranges: [[0, 15]], reason: 'fatal: 4014 Disallowed intents'.replace('fatal: ', 'fleet halted: FATAL from a: ') }]);
    h.srv.clock.advance(1_000);
    await until(() => closes.length === 2);
    expect(closes).toEqual([4006, 4006]);
    await admin(h.srv, 'POST', '/api/v1/sharding/resume');
    h.srv.clock.advance(1_000);
    await until(() => a.control.identified);
  });

  it('rejects connect() when the key is refused (HTTP 401)', async () => {
    await h.start();
    const a = make('a', { authorization: 'wrong' });
    await expect(a.control.connect()).rejects.toThrow(/401/);
  });

  it('close() stops the shards, closes with 1000 and leaves no timer', async () => {
    await h.start({ expectedControls: 1 });
    const clientClock = new ManualClock();
    const a = make('a', {}, clientClock);
    await a.control.connect();
    await until(() => a.starts.length === 1);
    expect(clientClock.pending).toBeGreaterThan(0);
    await a.control.close();
    expect(a.stops).toEqual([{ ranges: [[0, 15]], reason: 'control closed' }]);
    expect(clientClock.pending).toBe(0);
    await until(() => h.srv.dialect().state.controls.get('a')?.conn === null);
  });
});

describe('ShardingControl fencing (against a MASTER that misbehaves)', () => {
  let wss: WebSocketServer | undefined;

  afterEach(async () => {
    for (const c of controls.splice(0)) await c.close();
    if (wss) {
      for (const ws of wss.clients) ws.terminate();
      await new Promise((r) => wss!.close(r));
      wss = undefined;
    }
  });

  /** A fake MASTER: INITIALISE, IDENTIFIED, CONNECT [0,3], and then no ACK ever. */
  async function fakeMaster(opts: { ack?: boolean; init?: Record<string, number> } = {}): Promise<{
    url: string;
    identifies: Array<Record<string, unknown>>;
    sockets: WebSocket[];
    received: Array<{ o: number; d: unknown }>;
  }> {
    const identifies: Array<Record<string, unknown>> = [];
    const received: Array<{ o: number; d: unknown }> = [];
    const sockets: WebSocket[] = [];
    wss = new WebSocketServer({ port: 0 });
    await new Promise((r) => wss!.once('listening', r));
    let n = 0;
    wss.on('connection', (ws) => {
      sockets.push(ws);
      ws.send(JSON.stringify({ o: 5, d: { token: 't', heartbeat_interval: 1000, shard_count: 4, max_concurrency: 1, session_id: `s${++n}`, ...opts.init } }));
      ws.on('message', (buf: Buffer) => {
        const f = JSON.parse(buf.toString()) as { o: number; d: Record<string, unknown> };
        if (f.o === 10) {
          identifies.push(f.d);
          ws.send(JSON.stringify({ o: 15, d: { resumed: n > 1, shards: f.d.shards ?? [], redundant: false } }));
          if (n === 1) ws.send(JSON.stringify({ o: 6, d: { shardRange: [0, 3], shards: [[0, 3]], redundant: false } }));
        }
        if (f.o === 9 && opts.ack) ws.send(JSON.stringify({ o: 8, d: f.d }));
        received.push(f);
      });
    });
    return { url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, identifies, sockets, received };
  }

  function fenced(url: string, clock: ManualClock, over: Partial<ShardingControlOptions> = {}): Probe {
    const probe: Probe = { control: undefined as unknown as ShardingControl, starts: [], stops: [] };
    probe.control = new ShardingControl({
      url,
      authorization: 'k',
      name: 'a',
      clock,
      heartbeatGrace: 500,
      reconnectWindow: 3000,
      fenceMargin: 200,
      reconnect: { minMs: 100, maxMs: 100, random: () => 1 },
      start: (r) => void probe.starts.push(r),
      stop: (r, ctx) => void probe.stops.push({ ranges: r, reason: ctx.reason }),
      ...over,
    });
    controls.push(probe.control);
    return probe;
  }

  it('fences on the timing the MASTER sends in INITIALISE, not on its own defaults', async () => {
    const m = await fakeMaster({ init: { heartbeat_grace: 500, reconnect_window: 3000, fence_margin: 200 } });
    const clock = new ManualClock();
    const a = fenced(m.url, clock, { heartbeatGrace: undefined, reconnectWindow: undefined, fenceMargin: undefined });
    await a.control.connect();
    await until(() => a.starts.length === 1);
    expect(a.control.fenceTiming).toEqual({ heartbeatGrace: 500, reconnectWindow: 3000, fenceMargin: 200, source: 'master' });
    clock.advance(1_299);
    expect(a.stops).toEqual([]);
    clock.advance(1);
    expect(a.stops).toEqual([{ ranges: [[0, 3]], reason: expect.stringContaining('fenced: no ACK') }]);
  });

  it('refuses overrides that would fence later than the MASTER offloads, and says so', async () => {
    const m = await fakeMaster({ init: { heartbeat_grace: 500, reconnect_window: 3000, fence_margin: 200 } });
    const clock = new ManualClock();
    const a = fenced(m.url, clock, { heartbeatGrace: 5_000, reconnectWindow: undefined, fenceMargin: undefined });
    const errors: string[] = [];
    a.control.on('error', (e: Error) => errors.push(e.message));
    await a.control.connect();
    await until(() => a.starts.length === 1);
    expect(errors).toEqual([expect.stringMatching(/refused: without ACK it would fence after 5800 ms, the MASTER offloads after 1500 ms/)]);
    expect(a.control.fenceTiming.source).toBe('master');
    clock.advance(1_300);
    expect(a.stops).toHaveLength(1);
  });

  it('fenceTiming: overrides that fence earlier are kept; later ones refused; a MASTER without the fields leaves the local timing', () => {
    const init = { heartbeat_interval: 1000, heartbeat_grace: 500, reconnect_window: 3000, fence_margin: 200 };
    expect(fenceTiming(init, { fenceMargin: 400 })).toEqual({ heartbeatGrace: 500, reconnectWindow: 3000, fenceMargin: 400, source: 'override' });
    // Fencing exactly when the MASTER offloads is too late.
    expect(fenceTiming(init, { fenceMargin: 0 })).toMatchObject({ fenceMargin: 200, source: 'master', refused: expect.stringContaining('after 1500 ms, the MASTER offloads after 1500 ms') });
    expect(fenceTiming(init, { reconnectWindow: 3300 })).toMatchObject({ reconnectWindow: 3000, source: 'master', refused: expect.stringContaining('disconnected it would fence after 3100 ms') });
    expect(fenceTiming(init, {})).toEqual({ heartbeatGrace: 500, reconnectWindow: 3000, fenceMargin: 200, source: 'master' });
    expect(fenceTiming({ heartbeat_interval: 1000 }, {})).toEqual({ heartbeatGrace: 15_000, reconnectWindow: 30_000, fenceMargin: 5_000, source: 'local' });
  });

  it('stops its shards after heartbeatInterval + heartbeatGrace − fenceMargin without an ACK', async () => {
    const m = await fakeMaster();
    const clock = new ManualClock();
    const a = fenced(m.url, clock);
    await a.control.connect();
    await until(() => a.starts.length === 1);
    clock.advance(1_299);
    await turn();
    expect(a.stops).toEqual([]);
    clock.advance(1);
    expect(a.stops).toEqual([{ ranges: [[0, 3]], reason: expect.stringContaining('fenced: no ACK') }]);
  });

  it('restarts the fenced shards when ACKs resume on the same connection (it still owns them)', async () => {
    const opts = { ack: true };
    const m = await fakeMaster(opts);
    // (the fake MASTER stops ACKing below)
    const clock = new ManualClock();
    const a = fenced(m.url, clock);
    const unfenced: unknown[] = [];
    a.control.on('unfenced', (r) => unfenced.push(r));
    await a.control.connect();
    await until(() => a.starts.length === 1);
    opts.ack = false;
    clock.advance(1_300);
    expect(a.stops).toHaveLength(1);
    expect(a.control.running).toEqual([]);
    // A late ACK arrives before the MASTER's deadline.
    const before = m.received.length;
    m.sockets[0]?.send(JSON.stringify({ o: 8, d: { seq: 1 } }));
    await until(() => a.starts.length === 2);
    expect(unfenced).toEqual([[[0, 3]]]);
    expect(a.starts[1]).toEqual([[0, 3]]);
    await until(() => m.received.slice(before).some((f) => f.o === 12));
    expect(m.received.slice(before).filter((f) => f.o !== 9)).toEqual([
      { o: 11, d: null },
      { o: 12, d: { shards: [[0, 3]] } },
    ]);
    expect(m.sockets).toHaveLength(1);
  });

  it('drops the socket only after heartbeatInterval + heartbeatGrace + fenceMargin without an ACK', async () => {
    const m = await fakeMaster();
    const clock = new ManualClock();
    const a = fenced(m.url, clock);
    const closes: number[] = [];
    a.control.on('close', (code: number) => closes.push(code));
    await a.control.connect();
    await until(() => a.starts.length === 1);
    clock.advance(1_699);
    await turn();
    expect(closes).toEqual([]);
    clock.advance(1);
    await until(() => closes.length === 1);
    expect(closes).toEqual([1006]);
  });

  it('keeps the ACK fence running while disconnected (the MASTER may not have seen the socket go)', async () => {
    const m = await fakeMaster({ ack: true });
    const clock = new ManualClock();
    const a = fenced(m.url, clock, { reconnectWindow: 60_000 });
    await a.control.connect();
    await until(() => a.starts.length === 1);
    m.sockets[0]?.terminate();
    await until(() => !a.control.identified);
    clock.advance(1_299);
    expect(a.stops).toEqual([]);
    clock.advance(1);
    expect(a.stops).toEqual([{ ranges: [[0, 3]], reason: expect.stringContaining('fenced: no ACK') }]);
  });

  it('keeps serving while ACKs come', async () => {
    const m = await fakeMaster({ ack: true });
    const clock = new ManualClock();
    const a = fenced(m.url, clock);
    await a.control.connect();
    await until(() => a.starts.length === 1);
    for (let i = 0; i < 10; i++) {
      clock.advance(1_000);
      const hb = a.control.stats.framesIn;
      await until(() => a.control.stats.framesIn > hb);
    }
    expect(a.stops).toEqual([]);
  });

  it('stops its shards after reconnectWindow − fenceMargin disconnected, and reconnects with its session_id and shards', async () => {
    const m = await fakeMaster({ ack: true });
    const clock = new ManualClock();
    // A long grace, so that the ACK fence (which keeps running while disconnected) comes later.
    const a = fenced(m.url, clock, { heartbeatGrace: 5_000 });
    await a.control.connect();
    await until(() => a.starts.length === 1);
    expect(m.identifies[0]).toEqual({ name: 'a', capacity: 1, shards: [], features: ['identify-queue'] });
    // The MASTER goes away and refuses connections.
    const port = (wss!.address() as AddressInfo).port;
    for (const ws of wss!.clients) ws.terminate();
    await new Promise((r) => wss!.close(r));
    wss = undefined;
    await until(() => !a.control.identified);
    for (let t = 0; t < 2_700; t += 100) {
      clock.advance(100);
      await turn();
    }
    expect(a.stops).toEqual([]);
    clock.advance(100);
    expect(a.stops).toEqual([{ ranges: [[0, 3]], reason: expect.stringContaining('fenced: disconnected') }]);
    // The MASTER is back: the CONTROL comes back with its session_id, and the shards it serves (none now).
    wss = new WebSocketServer({ port });
    await new Promise((r) => wss!.once('listening', r));
    const back: Array<Record<string, unknown>> = [];
    wss.on('connection', (ws) => {
      ws.send(JSON.stringify({ o: 5, d: { token: 't', heartbeat_interval: 1000, shard_count: 4, max_concurrency: 1, session_id: 's9' } }));
      ws.on('message', (buf: Buffer) => {
        const f = JSON.parse(buf.toString()) as { o: number; d: Record<string, unknown> };
        if (f.o === 10) back.push(f.d);
      });
    });
    await until(() => {
      clock.advance(100);
      return back.length > 0;
    });
    expect(back[0]).toEqual({ name: 'a', capacity: 1, shards: [], session_id: 's1', features: ['identify-queue'] });
  });

  it('sends the shards it still serves when it reconnects in time', async () => {
    const m = await fakeMaster({ ack: true });
    const clock = new ManualClock();
    const a = fenced(m.url, clock);
    await a.control.connect();
    await until(() => a.starts.length === 1);
    m.sockets[0]?.close(1001, 'bye');
    await until(() => m.identifies.length === 2 || (clock.advance(100), false));
    expect(m.identifies[1]).toEqual({ name: 'a', capacity: 1, shards: [[0, 3]], session_id: 's1', features: ['identify-queue'] });
    await until(() => a.control.identified);
    expect(a.stops).toEqual([]);
  });
});

describe('MusterIdentifyThrottler (@discordjs/ws adapter)', () => {
  it('implements IIdentifyThrottler and waits for the CONTROL’s grant', async () => {
    const calls: Array<[number, AbortSignal | undefined]> = [];
    let release: (() => void) | undefined;
    const source = {
      identifySlot: (id: number, signal?: AbortSignal) => {
        calls.push([id, signal]);
        return new Promise<void>((r) => (release = r));
      },
    };
    const throttler: IIdentifyThrottler = new MusterIdentifyThrottler(source);
    const ac = new AbortController();
    let done = false;
    const p = throttler.waitForIdentify(7, ac.signal).then(() => (done = true));
    await turn();
    expect(done).toBe(false);
    expect(calls).toEqual([[7, ac.signal]]);
    release?.();
    await p;
    expect(done).toBe(true);
  });

  it('rejects only when its signal aborts: a wait the CONTROL ends stays pending, and is never granted after', async () => {
    let fail: ((e: Error) => void) | undefined;
    let grant: (() => void) | undefined;
    const source = {
      identifySlot: () =>
        new Promise<void>((resolve, reject) => {
          grant = resolve;
          fail = reject;
        }),
    };
    const throttler = new MusterIdentifyThrottler(source);
    const ac = new AbortController();
    let outcome = 'pending';
    const p = throttler.waitForIdentify(3, ac.signal).then(
      () => (outcome = 'granted'),
      () => (outcome = 'rejected'),
    );
    expect(throttler.isWaiting(3)).toBe(true);
    fail?.(new IdentifySlotError('STOPPED', 'stopped'));
    grant?.();
    await new Promise((r) => setTimeout(r, 5));
    expect(outcome).toBe('pending');
    ac.abort();
    await p;
    expect(outcome).toBe('rejected');
    expect(throttler.waiting).toBe(0);
    // An already aborted signal rejects at once.
    await expect(throttler.waitForIdentify(4, AbortSignal.abort())).rejects.toBeDefined();
  });

  it('passes the abort through from a real ShardingControl', async () => {
    await h.start({ expectedControls: 1, sessionStartLimit: 0 });
    const a = make('a');
    await a.control.connect();
    await until(() => a.starts.length === 1);
    const throttler: IIdentifyThrottler = new MusterIdentifyThrottler(a.control);
    const ac = new AbortController();
    const p = throttler.waitForIdentify(0, ac.signal);
    ac.abort(new Error('shard closed'));
    await expect(p).rejects.toThrow('shard closed');
  });

  it('a stopped shard’s wait stays pending until discord.js aborts it (real ShardingControl, SHUTDOWN)', async () => {
    await h.start({ expectedControls: 1, sessionStartLimit: 0 });
    const a = make('a');
    await a.control.connect();
    await until(() => a.starts.length === 1);
    const throttler = new MusterIdentifyThrottler(a.control);
    const ac = new AbortController();
    let outcome = 'pending';
    const p = throttler.waitForIdentify(2, ac.signal).then(
      () => (outcome = 'granted'),
      () => (outcome = 'rejected'),
    );
    await admin(h.srv, 'POST', '/api/v1/sharding/halt');
    await until(() => a.stops.length === 1);
    await new Promise((r) => setTimeout(r, 10));
    expect(outcome).toBe('pending');
    ac.abort();
    await p;
    expect(outcome).toBe('rejected');
  });

  it('gets real grants from Muster, paced by bucket', async () => {
    await h.start({ expectedControls: 1, maxConcurrency: 1, identifyWindow: 5000 });
    const a = make('a');
    await a.control.connect();
    await until(() => a.starts.length === 1);
    const throttler = new MusterIdentifyThrottler(a.control);
    const order: number[] = [];
    const ac = new AbortController();
    const p0 = throttler.waitForIdentify(0, ac.signal).then(() => order.push(0));
    const p1 = throttler.waitForIdentify(1, ac.signal).then(() => order.push(1));
    await p0;
    await roundTrips();
    expect(order).toEqual([0]);
    h.srv.clock.advance(5_000);
    await p1;
    expect(order).toEqual([0, 1]);
    expect(shardIdsOf([[0, 2], [5, 5]])).toEqual([0, 1, 2, 5]);
  });
});
