import { describe, expect, it } from 'vitest';
import {
  fleetView,
  initialState,
  persisted,
  shardsView,
  step,
  type Effect,
  type FleetEvent,
  type FleetState,
  type MachineConfig,
  type TimerKey,
} from '../../src/dialects/sharding/machine.js';
import { decodeControlFrame } from '../../src/protocols/sharding/messages.js';
import { MACHINE_CONFIG } from '../support/sharding-config.js';

const BASE: MachineConfig = MACHINE_CONFIG;

interface F {
  o: number;
  d: Record<string, unknown> | null;
}

/** Drives the pure machine: events in, effects out; timers fire in order as time advances. */
class H {
  state: FleetState;
  now = 0;
  readonly cfg: MachineConfig;
  readonly out = new Map<string, F[]>();
  readonly closes = new Map<string, number>();
  readonly persists: Array<{ key: string; value: unknown }> = [];
  readonly logs: Effect[] = [];
  readonly failovers: number[] = [];
  lastReply: { status: number; body: unknown } | undefined;

  constructor(cfg: Partial<MachineConfig> = {}, stored: { fleet?: unknown; assignment?: unknown; budget?: unknown } = {}) {
    this.cfg = { ...BASE, ...cfg };
    this.state = initialState(this.cfg, 0);
    this.feed({ type: 'loaded', now: 0, ...stored });
  }

  feed(ev: FleetEvent): readonly Effect[] {
    const r = step(this.state, ev, this.cfg);
    this.state = r.state;
    const closed: string[] = [];
    for (const e of r.effects) {
      if (e.type === 'send') {
        const list = this.out.get(e.conn) ?? [];
        list.push(JSON.parse(e.frame) as F);
        this.out.set(e.conn, list);
      } else if (e.type === 'close') {
        this.closes.set(e.conn, e.code);
        closed.push(e.conn);
      } else if (e.type === 'persist') this.persists.push({ key: e.key, value: e.value });
      else if (e.type === 'reply') this.lastReply = { status: e.status, body: e.body };
      else if (e.type === 'failover') this.failovers.push(e.seconds);
      else if (e.type === 'log') this.logs.push(e);
    }
    // The socket really closes right after the close frame.
    for (const c of closed) this.feed({ type: 'closed', now: this.now, conn: c });
    return r.effects;
  }

  open(conn: string): F {
    this.feed({ type: 'open', now: this.now, conn, sessionId: `sess-${conn}` });
    return this.take(conn)[0] as F;
  }

  send(conn: string, o: number, d: unknown): void {
    const res = decodeControlFrame(JSON.stringify({ o, d }));
    if (!res.ok) this.feed({ type: 'malformed', now: this.now, conn, detail: res.detail });
    else this.feed({ type: 'message', now: this.now, conn, frame: res.frame });
  }

  /** Opens `conn` and identifies as `name`; returns the IDENTIFIED d. */
  control(conn: string, name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
    this.open(conn);
    this.send(conn, 10, { name, ...extra });
    const f = this.take(conn);
    expect(f[0]?.o, JSON.stringify(f)).toBe(15);
    this.out.set(conn, f.slice(1));
    return f[0]?.d as Record<string, unknown>;
  }

  close(conn: string): void {
    this.feed({ type: 'closed', now: this.now, conn });
  }

  take(conn: string): F[] {
    const f = this.out.get(conn) ?? [];
    this.out.set(conn, []);
    return f.filter((x) => x.o !== 8);
  }

  /** The next frames to `conn`, as [o, d] pairs. */
  frames(conn: string): Array<[number, unknown]> {
    return this.take(conn).map((f) => [f.o, f.d]);
  }

  admin(action: Extract<FleetEvent, { type: 'admin' }>['action']): { status: number; body: Record<string, unknown> } {
    this.lastReply = undefined;
    this.feed({ type: 'admin', now: this.now, action });
    return this.lastReply as unknown as { status: number; body: Record<string, unknown> };
  }

  advance(ms: number): void {
    const target = this.now + ms;
    for (;;) {
      let next: [TimerKey, number] | undefined;
      for (const { key, at } of this.state.timers.values()) if (at <= target && (!next || at < next[1])) next = [key, at];
      if (!next) break;
      this.now = Math.max(this.now, next[1]);
      this.feed({ type: 'timer', now: this.now, key: next[0] });
    }
    this.now = target;
  }

  /** Keeps a control alive across `ms` by heartbeating every interval. */
  alive(ms: number, ...conns: string[]): void {
    const end = this.now + ms;
    while (this.now < end) {
      const dt = Math.min(this.cfg.heartbeatInterval, end - this.now);
      this.advance(dt);
      for (const c of conns) if (!this.closes.has(c)) this.send(c, 9, null);
    }
  }

  owners(): Array<string | null> {
    return this.state.shards.map((s) => s.owner);
  }

  connected(conn: string, shards: number[][]): void {
    this.send(conn, 11, null);
    this.send(conn, 12, { shards });
  }
}

const range = (o: string | null, n: number) => Array(n).fill(o) as Array<string | null>;

describe('machine: connection', () => {
  it('sends INITIALISE at once with the token, heartbeat_interval (ms), shard_count, max_concurrency and a session_id', () => {
    const h = new H({ maxConcurrency: 4 });
    expect(h.open('c1')).toEqual({
      o: 5,
      d: { token: 'tok', heartbeat_interval: 30000, shard_count: 16, max_concurrency: 4, session_id: 'sess-c1', heartbeat_grace: 15000, reconnect_window: 30000, fence_margin: 5000 },
    });
  });

  it('closes with ERROR then 4002 when no IDENTIFY comes within identifyTimeout', () => {
    const h = new H();
    h.open('c1');
    h.advance(9_999);
    expect(h.closes.has('c1')).toBe(false);
    h.advance(1);
    expect(h.frames('c1')).toEqual([[7, { code: 4002, message: expect.any(String) }]]);
    expect(h.closes.get('c1')).toBe(4002);
    expect(h.state.sockets.size).toBe(0);
  });

  it('IDENTIFY stops the identify deadline and answers IDENTIFIED', () => {
    const h = new H();
    expect(h.control('c1', 'a')).toEqual({ resumed: false, shards: [], redundant: false });
    h.alive(60_000, 'c1');
    expect(h.closes.has('c1')).toBe(false);
  });

  it('a malformed frame gets ERROR then 4004', () => {
    const h = new H();
    h.open('c1');
    h.feed({ type: 'malformed', now: 0, conn: 'c1', detail: 'bad' });
    expect(h.frames('c1')).toEqual([[7, { code: 4004, message: 'bad' }]]);
    expect(h.closes.get('c1')).toBe(4004);
  });

  it('refuses a duplicate name with 4003 and keeps the first', () => {
    const h = new H();
    h.control('c1', 'a');
    h.open('c2');
    h.send('c2', 10, { name: 'a' });
    expect(h.frames('c2')).toEqual([[7, { code: 4003, message: expect.stringContaining('already connected') }]]);
    expect(h.closes.get('c2')).toBe(4003);
    expect(h.state.controls.get('a')?.conn).toBe('c1');
  });

  it("lets a reconnect with the live session's session_id win: the old socket closes with 4005", () => {
    const h = new H({ expectedControls: 1 });
    h.control('c1', 'a');
    h.take('c1');
    h.open('c2');
    h.send('c2', 10, { name: 'a', session_id: 'sess-c1' });
    expect(h.closes.get('c1')).toBe(4005);
    expect(h.frames('c2')[0]).toEqual([15, { resumed: true, shards: [[0, 15]], redundant: false }]);
    expect(h.state.controls.get('a')?.conn).toBe('c2');
    expect(h.state.controls.get('a')?.sessionId).toBe('sess-c2');
    expect(h.owners()).toEqual(range('a', 16));
  });

  it('answers a second IDENTIFY with ERROR 4009 and keeps the socket', () => {
    const h = new H();
    h.control('c1', 'a');
    h.send('c1', 10, { name: 'a' });
    expect(h.frames('c1')).toEqual([[7, { code: 4009, message: expect.stringContaining('already identified') }]]);
    expect(h.closes.has('c1')).toBe(false);
  });

  it('answers state frames before IDENTIFY with ERROR 4009, and HEARTBEAT with ACK', () => {
    const h = new H();
    h.open('c1');
    for (const [o, d] of [
      [0, {}],
      [1, { code: 4004 }],
      [11, null],
      [12, { shards: [] }],
      [13, { shard_id: 0 }],
    ] as Array<[number, unknown]>) {
      h.send('c1', o, d);
      expect(h.frames('c1')).toEqual([[7, { code: 4009, message: expect.stringContaining('before IDENTIFY') }]]);
    }
    h.send('c1', 9, { seq: 1 });
    expect(h.out.get('c1')).toEqual([{ o: 8, d: { seq: 1 } }]);
    expect(h.state.phase).toBe('waiting');
  });
});

describe('machine: heartbeats, death, reconnects', () => {
  it('ACKs every HEARTBEAT, echoing d', () => {
    const h = new H();
    h.control('c1', 'a');
    h.out.set('c1', []);
    h.send('c1', 9, { seq: 7 });
    h.send('c1', 9, null);
    expect(h.out.get('c1')).toEqual([
      { o: 8, d: { seq: 7 } },
      { o: 8, d: null },
    ]);
  });

  it('closes a CONTROL with 4001 at heartbeatInterval + heartbeatGrace without HEARTBEAT, and offloads at once', () => {
    const h = new H({ expectedControls: 2, redundancy: 1 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.connected('a1', [[0, 15]]);
    h.connected('b1', []);
    h.take('a1');
    h.take('b1');
    h.advance(30_000);
    h.send('b1', 9, null);
    h.advance(14_999);
    expect(h.closes.has('a1')).toBe(false);
    h.advance(1);
    expect(h.frames('a1')).toEqual([[7, { code: 4001, message: expect.any(String) }]]);
    expect(h.closes.get('a1')).toBe(4001);
    expect(h.frames('b1')).toEqual([[3, { shards: [[0, 15]], reason: 'failover', from: 'a' }]]);
    expect(h.owners()).toEqual(range('b', 16));
  });

  it('a HEARTBEAT moves the deadline', () => {
    const h = new H();
    h.control('c1', 'a');
    h.advance(40_000);
    h.send('c1', 9, null);
    h.advance(44_999);
    expect(h.closes.has('c1')).toBe(false);
    h.advance(1);
    expect(h.closes.get('c1')).toBe(4001);
  });

  function running(): H {
    const h = new H({ expectedControls: 2 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.connected('a1', [[0, 7]]);
    h.connected('b1', [[8, 15]]);
    h.take('a1');
    h.take('b1');
    return h;
  }

  it('keeps a disconnected CONTROL’s shards for reconnectWindow; re-attaches by session_id with resumed:true and moves nothing', () => {
    const h = running();
    h.close('a1');
    expect(shardsView(h.state)[0]).toEqual({ id: 0, owner: 'a', state: 'disconnected' });
    h.alive(29_000, 'b1');
    h.open('a2');
    h.send('a2', 10, { name: 'a', session_id: 'sess-a1' });
    expect(h.frames('a2')).toEqual([[15, { resumed: true, shards: [[0, 7]], redundant: false }]]);
    expect(h.frames('b1')).toEqual([]);
    expect(h.owners()).toEqual([...range('a', 8), ...range('b', 8)]);
    h.alive(10_000, 'a2', 'b1');
    expect(h.frames('b1')).toEqual([]);
  });

  it('re-attaches by shards (no session_id)', () => {
    const h = running();
    h.close('a1');
    h.open('a2');
    h.send('a2', 10, { name: 'a', shards: [[0, 7]] });
    expect(h.frames('a2')).toEqual([[15, { resumed: true, shards: [[0, 7]], redundant: false }]]);
  });

  it('on re-attach, owned shards it no longer serves come back to it as OFFLOAD; claims of unowned ones are adopted', () => {
    const h = new H({ expectedControls: 2, shardCount: 20 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.connected('a1', [[0, 9]]);
    h.connected('b1', [[10, 19]]);
    h.take('a1');
    h.close('a1');
    h.open('a2');
    h.send('a2', 10, { name: 'a', session_id: 'sess-a1', shards: [[0, 4]] });
    expect(h.frames('a2')).toEqual([
      [15, { resumed: true, shards: [[0, 4]], redundant: false }],
      [3, { shards: [[5, 9]], reason: 'failover', from: 'a' }],
    ]);
    expect(h.owners().slice(0, 10)).toEqual(range('a', 10));
  });

  it('offloads when the window passes: whole to a standby', () => {
    const h = new H({ expectedControls: 3, redundancy: 1 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.control('s1', 's');
    h.connected('a1', [[0, 7]]);
    h.connected('b1', [[8, 15]]);
    h.connected('s1', []);
    for (const c of ['a1', 'b1', 's1']) h.take(c);
    h.close('a1');
    h.alive(29_999, 'b1', 's1');
    expect(h.frames('s1')).toEqual([]);
    h.advance(1);
    expect(h.frames('s1')).toEqual([[3, { shards: [[0, 7]], reason: 'failover', from: 'a' }]]);
    expect(h.frames('b1')).toEqual([]);
    expect(h.state.controls.has('a')).toBe(false);
  });

  it('offloads when the window passes: split by capacity without a standby', () => {
    const h = new H({ expectedControls: 3 });
    h.control('a1', 'a', { capacity: 1 });
    h.control('b1', 'b', { capacity: 1 });
    h.control('c1', 'c', { capacity: 3 });
    expect(h.frames('a1')[0]).toEqual([6, { shardRange: [0, 2], shards: [[0, 2]], redundant: false }]);
    h.connected('a1', [[0, 2]]);
    expect(h.frames('b1')[0]).toEqual([6, { shardRange: [3, 5], shards: [[3, 5]], redundant: false }]);
    h.connected('b1', [[3, 5]]);
    expect(h.frames('c1')[0]).toEqual([6, { shardRange: [6, 15], shards: [[6, 15]], redundant: false }]);
    h.connected('c1', [[6, 15]]);
    h.close('c1');
    h.alive(30_000, 'a1', 'b1');
    expect(h.frames('a1')).toEqual([[3, { shards: [[6, 10]], reason: 'failover', from: 'c' }]]);
    expect(h.frames('b1')).toEqual([[3, { shards: [[11, 15]], reason: 'failover', from: 'c' }]]);
  });

  it('a CONTROL declared dead that comes back claiming its old shards gets SHUTDOWN for them and is new', () => {
    const h = running();
    h.alive(30_000, 'b1');
    h.advance(15_000); // a misses its deadline (b heartbeats)
    expect(h.closes.get('a1')).toBe(4001);
    expect(h.frames('b1')).toEqual([[3, { shards: [[0, 7]], reason: 'failover', from: 'a' }]]);
    h.open('a2');
    h.send('a2', 10, { name: 'a', session_id: 'sess-a1', shards: [[0, 7]] });
    expect(h.frames('a2')).toEqual([
      [15, { resumed: false, shards: [], redundant: false }],
      [4, { reason: expect.any(String), shards: [[0, 7]] }],
      [6, { shardRange: [], shards: [], redundant: true }],
    ]);
    expect(h.owners()).toEqual(range('b', 16));
  });

  it('a CONTROL that comes back with neither session_id nor its shards is new; its old shards move', () => {
    const h = running();
    h.close('a1');
    h.open('a2');
    h.send('a2', 10, { name: 'a', shards: [] });
    // It is a new standby, so the lost shards go whole to it (and not to b).
    expect(h.frames('a2')).toEqual([
      [15, { resumed: false, shards: [], redundant: false }],
      [6, { shardRange: [], shards: [], redundant: true }],
      [3, { shards: [[0, 7]], reason: 'failover', from: 'a' }],
    ]);
    expect(h.frames('b1')).toEqual([]);
  });

  it('adopts claims of shards that nobody owns', () => {
    const h = new H();
    h.control('a1', 'a');
    expect(h.control('b1', 'b', { shards: [[4, 5], [20, 21]] })).toEqual({ resumed: false, shards: [[4, 5]], redundant: false });
    expect(h.frames('b1')).toEqual([[4, { reason: expect.any(String), shards: [[20, 21]] }]]);
    h.alive(45_000, 'a1', 'b1');
    // a gets the rest; b already serves its own.
    expect(h.frames('a1')).toEqual([[6, { shardRange: [], shards: [[0, 3], [6, 15]], redundant: false }]]);
    expect(h.frames('b1')).toEqual([]);
  });
});

describe('machine: start-up', () => {
  it('sends the first CONNECT startupDelay after start', () => {
    const h = new H();
    h.control('a1', 'a');
    h.alive(30_000, 'a1');
    h.advance(14_999);
    expect(h.frames('a1')).toEqual([]);
    h.advance(1);
    expect(h.frames('a1')[0]).toEqual([6, { shardRange: [0, 15], shards: [[0, 15]], redundant: false }]);
  });

  it('starts earlier once expectedControls have identified', () => {
    const h = new H({ expectedControls: 2 });
    h.control('a1', 'a');
    expect(h.frames('a1')).toEqual([]);
    h.control('b1', 'b');
    expect(h.frames('a1')).toEqual([[6, { shardRange: [0, 7], shards: [[0, 7]], redundant: false }]]);
  });

  it('waits for the first CONTROL when nobody is there at startupDelay', () => {
    const h = new H();
    h.advance(60_000);
    expect(h.state.phase).toBe('waiting');
    h.control('a1', 'a');
    expect(h.frames('a1')).toEqual([[6, { shardRange: [0, 15], shards: [[0, 15]], redundant: false }]]);
  });

  it('sequential: one CONTROL at a time, after CONNECTING then CONNECTED', () => {
    const h = new H({ expectedControls: 3 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.control('c1', 'c');
    expect(h.frames('a1')[0]?.[0]).toBe(6);
    expect(h.frames('b1')).toEqual([]);
    h.send('a1', 11, null);
    expect(shardsView(h.state)[0]?.state).toBe('connecting');
    expect(h.frames('b1')).toEqual([]);
    h.send('a1', 12, { shards: [[0, 5]] });
    expect(shardsView(h.state)[0]?.state).toBe('connected');
    expect(h.frames('b1')).toEqual([[6, { shardRange: [6, 10], shards: [[6, 10]], redundant: false }]]);
    expect(h.frames('c1')).toEqual([]);
    expect(h.state.phase).toBe('starting');
    h.connected('b1', [[6, 10]]);
    h.connected('c1', [[11, 15]]);
    expect(h.state.phase).toBe('running');
  });

  it('redundancy standbys get CONNECT {shardRange: [], shards: [], redundant: true}', () => {
    const h = new H({ expectedControls: 2, redundancy: 1 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.connected('a1', [[0, 15]]);
    expect(h.frames('b1')).toEqual([[6, { shardRange: [], shards: [], redundant: true }]]);
    expect(fleetView(h.state, h.cfg, 0).controls).toMatchObject([{ name: 'a', redundant: false }, { name: 'b', redundant: true }]);
  });

  it('treats a CONTROL that does not reach CONNECTED within connectTimeout as dead: SHUTDOWN, 4001, shards moved; the next one starts', () => {
    const h = new H({ expectedControls: 2, heartbeatInterval: 1e9 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.take('a1');
    h.send('a1', 11, null);
    h.advance(119_999);
    expect(h.closes.has('a1')).toBe(false);
    h.advance(1);
    expect(h.frames('a1')).toEqual([
      [4, { reason: expect.stringContaining('connectTimeout') }],
      [7, { code: 4001, message: expect.any(String) }],
    ]);
    expect(h.closes.get('a1')).toBe(4001);
    // b got its own CONNECT; a's shards followed as failover.
    expect(h.frames('b1')).toEqual([
      [6, { shardRange: [8, 15], shards: [[8, 15]], redundant: false }],
      [3, { shards: [[0, 7]], reason: 'failover', from: 'a' }],
    ]);
  });

  it('parallel: every CONTROL with identify-queue gets CONNECT at once; the others wait their turn', () => {
    const h = new H({ expectedControls: 3, startup: 'parallel' });
    h.control('a1', 'a', { features: ['identify-queue'] });
    h.control('b1', 'b');
    h.control('c1', 'c', { features: ['identify-queue'] });
    expect(h.frames('a1')).toEqual([[6, { shardRange: [0, 5], shards: [[0, 5]], redundant: false }]]);
    expect(h.frames('c1')).toEqual([[6, { shardRange: [11, 15], shards: [[11, 15]], redundant: false }]]);
    expect(h.frames('b1')).toEqual([[6, { shardRange: [6, 10], shards: [[6, 10]], redundant: false }]]);
    const h2 = new H({ expectedControls: 3, startup: 'parallel' });
    h2.control('a1', 'a');
    h2.control('b1', 'b');
    h2.control('c1', 'c', { features: ['identify-queue'] });
    expect(h2.frames('c1')[0]?.[0]).toBe(6);
    expect(h2.frames('a1')[0]?.[0]).toBe(6);
    expect(h2.frames('b1')).toEqual([]);
    h2.connected('a1', [[0, 5]]);
    expect(h2.frames('b1')[0]?.[0]).toBe(6);
  });

  it('a CONTROL away at its turn keeps its plan: CONNECT when it comes back within the window', () => {
    const h = new H({ expectedControls: 2 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.close('b1');
    h.connected('a1', [[0, 7]]);
    expect(h.frames('a1')).toEqual([[6, { shardRange: [0, 7], shards: [[0, 7]], redundant: false }]]);
    expect(shardsView(h.state)[8]).toEqual({ id: 8, owner: null, state: 'pending' });
    expect(h.state.phase).toBe('running');
    h.alive(20_000, 'a1');
    h.open('b2');
    h.send('b2', 10, { name: 'b', session_id: 'sess-b1' });
    expect(h.frames('b2')).toEqual([
      [15, { resumed: true, shards: [], redundant: false }],
      [6, { shardRange: [8, 15], shards: [[8, 15]], redundant: false }],
    ]);
  });

  it('... and its planned shards go elsewhere when it does not; a CONTROL arriving after start-up is a standby', () => {
    const h = new H({ expectedControls: 2 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.close('b1');
    h.connected('a1', [[0, 7]]);
    h.take('a1');
    h.alive(30_000, 'a1');
    // b never served them, so there is no `from`.
    expect(h.frames('a1')).toEqual([[3, { shards: [[8, 15]], reason: 'failover' }]]);
    h.control('c1', 'c');
    expect(h.frames('c1')).toEqual([[6, { shardRange: [], shards: [], redundant: true }]]);
  });
});

describe('machine: CONNECTED and the identify queue', () => {
  function started(cfg: Partial<MachineConfig> = {}): H {
    const h = new H({ expectedControls: 2, ...cfg });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.connected('a1', [[0, 7]]);
    h.take('a1');
    h.take('b1');
    return h;
  }

  it('CONNECTED listing shards not given: ERROR 4009 and SHUTDOWN for those, socket open', () => {
    const h = started();
    h.send('a1', 12, { shards: [[6, 9], [40, 41]] });
    expect(h.frames('a1')).toEqual([
      [7, { code: 4009, message: expect.stringContaining('8-9,40-41') }],
      [4, { reason: expect.any(String), shards: [[8, 9], [40, 41]] }],
    ]);
    expect(h.closes.has('a1')).toBe(false);
    expect(h.owners().slice(8)).toEqual(range('b', 8));
  });

  it('IDENTIFY_REQUEST for a shard not owned: ERROR 4009, no grant', () => {
    const h = started();
    h.send('a1', 13, { shard_id: 9 });
    h.send('a1', 13, { shard_id: 99 });
    expect(h.frames('a1')).toEqual([
      [7, { code: 4009, message: expect.stringContaining('shard 9') }],
      [7, { code: 4009, message: expect.stringContaining('shard 99') }],
    ]);
  });

  it('grants one identify per bucket per identifyWindow across the fleet', () => {
    const h = started({ maxConcurrency: 2 });
    h.send('a1', 13, { shard_id: 0 });
    h.send('b1', 13, { shard_id: 8 }); // bucket 0 too
    h.send('a1', 13, { shard_id: 1 }); // bucket 1
    expect(h.frames('a1')).toEqual([
      [14, { shard_id: 0 }],
      [14, { shard_id: 1 }],
    ]);
    expect(h.frames('b1')).toEqual([]);
    h.advance(4_999);
    expect(h.frames('b1')).toEqual([]);
    h.advance(1);
    expect(h.frames('b1')).toEqual([[14, { shard_id: 8 }]]);
  });

  it('spaces grants of a bucket by identifyWindow + identifyMargin', () => {
    const h = started({ maxConcurrency: 1, identifyMargin: 250 });
    h.send('a1', 13, { shard_id: 0 });
    h.send('a1', 13, { shard_id: 1 });
    expect(h.frames('a1')).toEqual([[14, { shard_id: 0 }]]);
    h.advance(5_249);
    expect(h.frames('a1')).toEqual([]);
    h.advance(1);
    expect(h.frames('a1')).toEqual([[14, { shard_id: 1 }]]);
  });

  it('IDENTIFY_CANCEL drops a waiting request: no grant, no window, no session start', () => {
    const h = started({ maxConcurrency: 1, sessionStartLimit: 10 });
    h.send('a1', 13, { shard_id: 0 });
    h.send('a1', 13, { shard_id: 1 });
    h.send('a1', 13, { shard_id: 2 });
    expect(h.frames('a1')).toEqual([[14, { shard_id: 0 }]]);
    h.send('a1', 16, { shard_id: 1 });
    // A cancel of what is not queued (already granted, or never asked) is harmless.
    h.send('a1', 16, { shard_id: 0 });
    h.send('a1', 16, { shard_id: 7 });
    expect(h.state.queue.waiting).toEqual([{ shard: 2, control: 'a' }]);
    h.advance(5_000);
    expect(h.frames('a1')).toEqual([[14, { shard_id: 2 }]]);
    expect(fleetView(h.state, h.cfg, h.now)).toMatchObject({ budgetRemaining: 8 });
    h.advance(5_000);
    expect(h.frames('a1')).toEqual([]);
  });

  it('drops the requests of a CONTROL that disconnects', () => {
    const h = started();
    h.send('a1', 13, { shard_id: 0 });
    h.send('a1', 13, { shard_id: 1 });
    h.close('a1');
    expect(h.state.queue.waiting).toEqual([]);
    expect(h.state.timers.has('queue')).toBe(false);
  });

  it('keeps the budget, stops at sessionStartLimit, and reports it', () => {
    const h = started({ sessionStartLimit: 2, maxConcurrency: 16 });
    for (const id of [0, 1, 2]) h.send('a1', 13, { shard_id: id });
    expect(h.frames('a1')).toEqual([
      [14, { shard_id: 0 }],
      [14, { shard_id: 1 }],
    ]);
    expect(fleetView(h.state, h.cfg, h.now)).toMatchObject({ budgetRemaining: 0, budgetExhausted: true, identifyQueueDepth: 1 });
    expect(h.logs.some((l) => l.type === 'log' && /budget/.test(l.msg))).toBe(true);
    expect(h.persists.filter((p) => p.key === 'budget').at(-1)?.value).toMatchObject({ used: 2 });
  });

  it('restores the budget and bucket times from the store', () => {
    const h = new H({ expectedControls: 1, sessionStartLimit: 5 }, { budget: { windowStart: 0, used: 5, lastGrant: [0] } });
    expect(fleetView(h.state, h.cfg, 0)).toMatchObject({ budgetRemaining: 0 });
    const h2 = new H({ expectedControls: 1 }, { budget: { windowStart: 0, used: 1, lastGrant: [0] } });
    h2.control('a1', 'a');
    h2.take('a1');
    h2.send('a1', 13, { shard_id: 0 });
    expect(h2.frames('a1')).toEqual([]);
    h2.advance(5_000);
    expect(h2.frames('a1')).toEqual([[14, { shard_id: 0 }]]);
  });
});

describe('machine: INITIALISE carries the fencing timing', () => {
  it('sends heartbeat_grace, reconnect_window and fence_margin beside the seed fields', () => {
    const h = new H({ heartbeatGrace: 7_000, reconnectWindow: 20_000, fenceMargin: 3_000 });
    expect(h.open('a1')).toEqual({
      o: 5,
      d: { token: 'tok', heartbeat_interval: 30_000, shard_count: 16, max_concurrency: 1, session_id: 'sess-a1', heartbeat_grace: 7_000, reconnect_window: 20_000, fence_margin: 3_000 },
    });
  });
});

describe('machine: FATAL, halt and resume', () => {
  it('FATAL sends SHUTDOWN to every CONTROL, closes them with 4006 and persists the halt', () => {
    const h = new H({ expectedControls: 2 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.take('a1');
    h.send('a1', 1, { code: 4004, message: 'Authentication failed' });
    for (const c of ['a1', 'b1']) {
      expect(h.frames(c)).toEqual([
        [4, { reason: expect.stringContaining('4004') }],
        [7, { code: 4006, message: expect.any(String) }],
      ]);
      expect(h.closes.get(c)).toBe(4006);
    }
    expect(h.state.phase).toBe('halted');
    expect(h.persists.filter((p) => p.key === 'fleet').at(-1)?.value).toMatchObject({ halted: true });
    expect(shardsView(h.state)[0]).toEqual({ id: 0, owner: null, state: 'halted' });
  });

  it('while halted, an IDENTIFY gets SHUTDOWN and 4006; nothing starts until resume', () => {
    const h = new H({}, { fleet: { halted: true, reason: 'x' } });
    expect(h.state.phase).toBe('halted');
    h.open('c1');
    h.send('c1', 10, { name: 'a', shards: [[0, 3]] });
    expect(h.frames('c1')).toEqual([
      [4, { reason: expect.stringContaining('halted') }],
      [7, { code: 4006, message: expect.any(String) }],
    ]);
    h.advance(100_000);
    expect(h.admin({ kind: 'resume' })).toEqual({ status: 200, body: { halted: false, phase: 'waiting' } });
    h.control('c2', 'a');
    h.advance(44_999);
    expect(h.frames('c2')).toEqual([]);
    h.advance(1);
    expect(h.frames('c2')[0]?.[0]).toBe(6);
  });

  it('a CONTROL disconnected at the halt keeps its shards reserved until its window passes', () => {
    const h = new H({ expectedControls: 2 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.connected('a1', [[0, 7]]);
    h.close('a1');
    h.admin({ kind: 'halt' });
    expect(h.owners()).toEqual([...range('a', 8), ...range(null, 8)]);
    h.advance(30_000);
    expect(h.owners()).toEqual(range(null, 16));
  });

  it('halt and resume are idempotent', () => {
    const h = new H();
    expect(h.admin({ kind: 'resume' }).status).toBe(200);
    expect(h.admin({ kind: 'halt' })).toEqual({ status: 200, body: { halted: true, reason: 'halted by an operator' } });
    expect(h.admin({ kind: 'halt' }).status).toBe(200);
  });
});

describe('machine: rebalance (make before break)', () => {
  function withNewcomer(): H {
    const h = new H({ expectedControls: 2 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.connected('a1', [[0, 7]]);
    h.connected('b1', [[8, 15]]);
    h.control('c1', 'c');
    h.connected('c1', []);
    for (const c of ['a1', 'b1', 'c1']) h.take(c);
    return h;
  }

  it('OFFLOADs to the new owner; the old owner gets SHUTDOWN only after the new one is CONNECTED', () => {
    const h = withNewcomer();
    const r = h.admin({ kind: 'rebalance', body: undefined });
    expect(r.status).toBe(202);
    expect(r.body.moves).toEqual([
      { from: 'a', to: 'b', shards: [[6, 7]] },
      { from: 'b', to: 'c', shards: [[11, 15]] },
    ]);
    expect(h.frames('c1')).toEqual([[3, { shards: [[11, 15]], reason: 'rebalance', from: 'b' }]]);
    expect(h.frames('b1')).toEqual([[3, { shards: [[6, 7]], reason: 'rebalance', from: 'a' }]]);
    expect(h.owners()[11]).toBe('b');
    expect(h.admin({ kind: 'rebalance', body: undefined }).status).toBe(409);
    // The incoming owner may ask for identify slots.
    h.send('c1', 13, { shard_id: 11 });
    expect(h.frames('c1')).toEqual([[14, { shard_id: 11 }]]);
    h.connected('c1', [[11, 15]]);
    expect(h.owners()[11]).toBe('c');
    expect(h.frames('b1')).toEqual([[4, { reason: 'rebalance', shards: [[11, 15]] }]]);
  });

  it('moves named shards to a named CONTROL', () => {
    const h = withNewcomer();
    const r = h.admin({ kind: 'rebalance', body: { to: 'c', shards: [[7, 8]] } });
    expect(r.body.moves).toEqual([
      { from: 'a', to: 'c', shards: [[7, 7]] },
      { from: 'b', to: 'c', shards: [[8, 8]] },
    ]);
    expect(h.frames('c1')).toEqual([
      [3, { shards: [[7, 7]], reason: 'rebalance', from: 'a' }],
      [3, { shards: [[8, 8]], reason: 'rebalance', from: 'b' }],
    ]);
  });

  it('moves only shards that their owner has reported CONNECTED (there must be a "before")', () => {
    const h = new H({ expectedControls: 2 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.connected('a1', [[0, 7]]);
    h.connected('b1', [[8, 15]]);
    h.control('c1', 'c');
    h.connected('c1', []);
    h.close('a1');
    h.alive(30_000, 'b1', 'c1'); // a's shards go to the standby c, which is still starting them
    expect(h.owners()[0]).toBe('c');
    expect(h.admin({ kind: 'rebalance', body: { to: 'b', shards: [[0, 0]] } })).toMatchObject({ status: 409, body: { error: 'NOT_MOVABLE' } });
    h.send('c1', 12, { shards: [[0, 3]] });
    expect(h.admin({ kind: 'rebalance', body: { to: 'b', shards: [[0, 0]] } }).status).toBe(202);
    h.send('b1', 12, { shards: [[0, 0]] });
    // The plan (b 0-7, c 8-15) skips 4-7, which c is still starting.
    expect(h.admin({ kind: 'rebalance', body: undefined }).body.moves).toEqual([
      { from: 'c', to: 'b', shards: [[1, 3]] },
      { from: 'b', to: 'c', shards: [[8, 15]] },
    ]);
  });

  it('answers bad rebalance requests with 400/404/409', () => {
    const h = withNewcomer();
    // A body of the wrong shape never reaches the machine: see test/unit/http-body.test.ts.
    expect(h.admin({ kind: 'rebalance', body: { to: 'zz', shards: [[0, 1]] } }).status).toBe(404);
    expect(h.admin({ kind: 'rebalance', body: { to: 'c', shards: [[15, 16]] } }).status).toBe(400);
    const waiting = new H();
    expect(waiting.admin({ kind: 'rebalance', body: undefined })).toMatchObject({ status: 409, body: { error: 'NOT_RUNNING' } });
  });

  it('if the incoming owner dies, the old owner keeps the shards', () => {
    const h = withNewcomer();
    h.admin({ kind: 'rebalance', body: { to: 'c', shards: [[0, 1]] } });
    h.close('c1');
    h.alive(31_000, 'a1', 'b1');
    expect(h.owners().slice(0, 2)).toEqual(['a', 'a']);
    expect(h.state.shards.every((s) => s.target === null)).toBe(true);
  });

  it('if the old owner dies mid-way, the incoming owner simply keeps them', () => {
    const h = withNewcomer();
    h.admin({ kind: 'rebalance', body: { to: 'c', shards: [[0, 1]] } });
    h.close('a1');
    h.alive(31_000, 'b1', 'c1');
    expect(h.owners().slice(0, 2)).toEqual(['c', 'c']);
  });
});

describe('machine: COMMAND relay', () => {
  it('relays restart_shard and restart_cluster to the owner, and refuses the rest', () => {
    const h = new H({ expectedControls: 1 });
    h.control('a1', 'a');
    h.take('a1');
    expect(h.admin({ kind: 'command', name: 'a', body: { command: 'restart_shard', args: { shard_id: 3 } } })).toMatchObject({ status: 202 });
    expect(h.admin({ kind: 'command', name: 'a', body: { command: 'restart_cluster', args: { shards: [[0, 1], [4, 4]] } } }).status).toBe(202);
    expect(h.frames('a1')).toEqual([
      [2, { command: 'restart_shard', args: { shard_id: 3 } }],
      [2, { command: 'restart_cluster', args: { shards: [[0, 1], [4, 4]] } }],
    ]);
    expect(h.admin({ kind: 'command', name: 'zz', body: { command: 'restart_shard', args: { shard_id: 3 } } }).status).toBe(404);
    expect(h.admin({ kind: 'command', name: 'a', body: { command: 'restart_shard', args: { shard_id: 99 } } }).status).toBe(400);
    // Unknown commands and bodies of the wrong shape are refused at the HTTP edge (test/unit/http-body.test.ts).
    h.control('b1', 'b');
    // Relayed even for a shard it does not own (the CONTROL restarts only what it runs).
    expect(h.admin({ kind: 'command', name: 'b', body: { command: 'restart_shard', args: { shard_id: 3 } } }).status).toBe(202);
    expect(h.frames('b1')).toEqual([[2, { command: 'restart_shard', args: { shard_id: 3 } }]]);
    h.close('b1');
    expect(h.admin({ kind: 'command', name: 'b', body: { command: 'restart_shard', args: { shard_id: 3 } } }).status).toBe(409);
  });
});

describe('machine: persistence and reconciliation after a MASTER restart', () => {
  function stored(): H {
    const h = new H({ expectedControls: 2 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.connected('a1', [[0, 7]]);
    h.connected('b1', [[8, 15]]);
    const last = (k: string) => h.persists.filter((p) => p.key === k).at(-1)?.value;
    return new H({}, { assignment: last('assignment'), fleet: last('fleet'), budget: last('budget') });
  }

  it('persists the assignment with the session ids', () => {
    const h = new H({ expectedControls: 1 });
    h.control('a1', 'a');
    expect(persisted(h.state, h.cfg, 'assignment')).toEqual({ shardCount: 16, started: true, controls: { a: { sessionId: 'sess-a1', shards: [[0, 15]] } } });
  });

  it('restores owners; CONTROLs that come back (session or shards) keep their shards, nothing moves', () => {
    const h = stored();
    expect(h.state.phase).toBe('running');
    expect(h.owners()).toEqual([...range('a', 8), ...range('b', 8)]);
    h.open('a2');
    h.send('a2', 10, { name: 'a', session_id: 'sess-a1', shards: [[0, 7]] });
    h.open('b2');
    h.send('b2', 10, { name: 'b', shards: [[8, 15]] });
    expect(h.frames('a2')).toEqual([[15, { resumed: true, shards: [[0, 7]], redundant: false }]]);
    expect(h.frames('b2')).toEqual([[15, { resumed: true, shards: [[8, 15]], redundant: false }]]);
    h.alive(120_000, 'a2', 'b2');
    expect(h.frames('a2')).toEqual([]);
    expect(h.frames('b2')).toEqual([]);
  });

  it('tells a CONTROL that claims shards stored for another to stop them', () => {
    const h = stored();
    h.open('c1');
    h.send('c1', 10, { name: 'c', shards: [[6, 9]] });
    expect(h.frames('c1')).toEqual([
      [15, { resumed: false, shards: [], redundant: false }],
      [4, { reason: expect.any(String), shards: [[6, 9]] }],
      [6, { shardRange: [], shards: [], redundant: true }],
    ]);
  });

  it('offloads the shards of a stored CONTROL that does not return within reconnectWindow', () => {
    const h = stored();
    h.open('a2');
    h.send('a2', 10, { name: 'a', shards: [[0, 7]] });
    h.take('a2');
    h.alive(30_000, 'a2');
    expect(h.frames('a2')).toEqual([[3, { shards: [[8, 15]], reason: 'failover', from: 'b' }]]);
  });

  it('starts afresh when the stored assignment is for another shardCount, and stays halted when halted', () => {
    const h = new H({ shardCount: 8 }, { assignment: { shardCount: 16, started: true, controls: { a: { sessionId: 's', shards: [[0, 15]] } } } });
    expect(h.state.phase).toBe('waiting');
    expect(h.owners()).toEqual(range(null, 8));
    const halted = new H({}, { fleet: { halted: true, reason: 'FATAL', at: 1 }, assignment: { shardCount: 16, started: true, controls: {} } });
    expect(fleetView(halted.state, halted.cfg, 0)).toMatchObject({ halted: true, haltReason: 'FATAL' });
  });

  it('ignores garbage in the store', () => {
    const h = new H({}, { fleet: 5, assignment: { started: true, shardCount: 16, controls: { a: { sessionId: 1 }, b: 'x' } }, budget: [] });
    expect(h.state.phase).toBe('running');
    expect(h.state.controls.size).toBe(0);
  });
});

describe('machine: purity and scale', () => {
  it('never changes the state it is given', () => {
    const h = new H({ expectedControls: 2, redundancy: 1 });
    const steps: Array<() => void> = [
      () => h.control('a1', 'a'),
      () => h.control('b1', 'b'),
      () => h.connected('a1', [[0, 15]]),
      () => h.send('a1', 13, { shard_id: 3 }),
      () => h.control('c1', 'c'),
      () => h.admin({ kind: 'rebalance', body: undefined }),
      () => h.close('a1'),
      () => h.alive(40_000, 'b1', 'c1'),
      () => h.admin({ kind: 'halt' }),
    ];
    for (const run of steps) {
      const before = h.state;
      const snapshot = structuredClone(before);
      run();
      expect(before).toEqual(snapshot);
    }
  });

  it("the old owner's CONNECTED during a make-before-break does not cancel it", () => {
    const h = new H({ expectedControls: 2 });
    h.control('a1', 'a');
    h.control('b1', 'b');
    h.connected('a1', [[0, 7]]);
    h.connected('b1', [[8, 15]]);
    h.admin({ kind: 'rebalance', body: { to: 'b', shards: [[0, 1]] } });
    h.send('a1', 12, { shards: [[0, 7]] });
    expect(h.state.shards[0]).toMatchObject({ owner: 'a', target: 'b' });
    h.take('a1');
    h.send('b1', 12, { shards: [[0, 1]] });
    expect(h.state.shards[0]).toMatchObject({ owner: 'b', target: null });
    expect(h.frames('a1')).toEqual([[4, { reason: 'rebalance', shards: [[0, 1]] }]]);
  });

  it('handles a fleet of 5000 shards without quadratic copying', () => {
    const h = new H({ shardCount: 5000, maxConcurrency: 16, expectedControls: 1 });
    h.control('a1', 'a');
    const t0 = performance.now();
    for (let id = 0; id < 5000; id++) h.send('a1', 13, { shard_id: id });
    for (let i = 0; i < 40; i++) h.send('a1', 9, null);
    expect(performance.now() - t0).toBeLessThan(4000);
    expect(h.state.queue.waiting.length).toBe(5000 - 16);
  });
});
