import { describe, expect, it } from 'vitest';
import { initialState, step, type AdoptedControl, type FleetEvent, type FleetState, type MachineConfig } from '../../src/dialects/sharding/machine.js';
import { Op } from '../../src/protocols/sharding/messages.js';
import { MACHINE_CONFIG } from '../support/sharding-config.js';

/**
 * The pure world's takeover (world/takeover.ts): a new leader loads the stored
 * assignment, then the edges re-announce the sockets they hold. Nothing is said on the
 * wire unless the claims and the store disagree; no shard ends with two owners.
 */

const CFG: MachineConfig = MACHINE_CONFIG;

interface Frame {
  o: number;
  d: Record<string, unknown> | null;
}

class World {
  state: FleetState;
  now = 1_000;
  readonly frames = new Map<string, Frame[]>();
  readonly closes = new Map<string, number>();
  readonly timers = new Map<string, number>();

  constructor(stored: { fleet?: unknown; assignment?: unknown } = {}) {
    this.state = initialState(CFG, this.now);
    this.feed({ type: 'loaded', now: this.now, ...stored });
  }

  feed(ev: FleetEvent): void {
    const r = step(this.state, ev, CFG);
    this.state = r.state;
    for (const e of r.effects) {
      if (e.type === 'send') this.frames.set(e.conn, [...(this.frames.get(e.conn) ?? []), JSON.parse(e.frame) as Frame]);
      else if (e.type === 'close') this.closes.set(e.conn, e.code);
    }
  }

  adopt(conn: string, control?: AdoptedControl): void {
    this.feed({ type: 'adopt', now: this.now, conn, sessionId: `s-${conn}`, ...(control ? { control } : {}) });
  }

  advance(ms: number): void {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.state.timers.values()].filter((t) => t.at <= until).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.now = Math.max(this.now, due.at);
      this.feed({ type: 'timer', now: this.now, key: due.key });
    }
    this.now = until;
  }

  ops(conn: string): number[] {
    return (this.frames.get(conn) ?? []).map((f) => f.o);
  }

  owners(): Array<string | null> {
    return this.state.shards.map((s) => s.owner);
  }
}

const stored = (controls: Record<string, [number, number][]>): { assignment: unknown } => ({
  assignment: {
    shardCount: CFG.shardCount,
    started: true,
    controls: Object.fromEntries(Object.entries(controls).map(([name, shards]) => [name, { sessionId: `old-${name}`, shards }])),
  },
});

const ctl = (name: string, shards: [number, number][], extra: Partial<AdoptedControl> = {}): AdoptedControl => ({ name, shards, started: true, redundant: false, ...extra });

describe('sharding takeover: a new leader re-attaches the announced CONTROLs', () => {
  it('keeps every announced CONTROL and its shards without a frame on the wire', () => {
    const w = new World(stored({ a: [[0, 7]], b: [[8, 15]] }));
    w.adopt('a1', ctl('a', [[0, 7]]));
    w.adopt('b1', ctl('b', [[8, 15]]));
    expect(w.ops('a1')).toEqual([]);
    expect(w.ops('b1')).toEqual([]);
    expect(w.owners()).toEqual([...Array<string>(8).fill('a'), ...Array<string>(8).fill('b')]);
    expect(w.state.shards.every((s) => s.work === 'connected')).toBe(true);
    const a = w.state.controls.get('a');
    expect(a).toMatchObject({ conn: 'a1', sessionId: 's-a1', disconnectedAt: null, started: true });
    // The reconnectWindow timers are gone; the heartbeat deadlines run from the takeover.
    expect([...w.state.timers.keys()].sort()).toEqual(['hb:a', 'hb:b']);
    w.advance(60_000);
    // No HEARTBEAT came in 45 s: they are dead, as under any leader.
    expect(w.closes.get('a1')).toBe(4001);
  });

  it('reconciles the claims with the store: SHUTDOWN for what another owns, OFFLOAD for what it dropped, adopts what nobody owns', () => {
    const w = new World(stored({ a: [[0, 7]], b: [[8, 13]] }));
    // a claims 0-5 (it dropped 6-7) and 8-9 (b's); shards 14-15 are nobody's.
    w.adopt('a1', ctl('a', [[0, 5], [8, 9], [14, 15]]));
    const frames = w.frames.get('a1') ?? [];
    expect(frames.find((f) => f.o === Op.SHUTDOWN)?.d).toMatchObject({ shards: [[8, 9]] });
    expect(frames.find((f) => f.o === Op.OFFLOAD)?.d).toMatchObject({ shards: [[6, 7]], reason: 'failover', from: 'a' });
    expect(w.owners().slice(0, 8)).toEqual(Array<string>(8).fill('a'));
    expect(w.owners().slice(8, 14)).toEqual(Array<string>(6).fill('b'));
    expect(w.owners().slice(14)).toEqual(['a', 'a']);
  });

  it('moves the shards of a CONTROL nobody announces after reconnectWindow, and not before', () => {
    const w = new World(stored({ a: [[0, 7]], b: [[8, 15]] }));
    w.adopt('a1', ctl('a', [[0, 7]]));
    w.advance(CFG.reconnectWindow - 1);
    expect(w.owners().slice(8)).toEqual(Array<string>(8).fill('b'));
    expect(w.ops('a1')).toEqual([]);
    w.advance(1);
    expect(w.owners()).toEqual(Array<string>(16).fill('a'));
    expect(w.frames.get('a1')?.find((f) => f.o === Op.OFFLOAD)?.d).toMatchObject({ shards: [[8, 15]], reason: 'failover', from: 'b' });
  });

  it('a CONTROL that was on the dead instance comes back by IDENTIFY with its session and is resumed', () => {
    const w = new World(stored({ a: [[0, 7]], b: [[8, 15]] }));
    w.adopt('a1', ctl('a', [[0, 7]]));
    w.feed({ type: 'open', now: w.now, conn: 'b2', sessionId: 's-b2' });
    w.feed({ type: 'message', now: w.now, conn: 'b2', frame: { o: Op.IDENTIFY, d: { name: 'b', session_id: 'old-b', shards: [[8, 15]] } } });
    expect(w.frames.get('b2')?.at(-1)).toEqual({ o: Op.IDENTIFIED, d: { resumed: true, shards: [[8, 15]], redundant: false } });
    expect(w.owners()).toEqual([...Array<string>(8).fill('a'), ...Array<string>(8).fill('b')]);
  });

  it('a second socket announced for the same CONTROL is closed with 4003; the first stays', () => {
    const w = new World(stored({ a: [[0, 15]] }));
    w.adopt('a1', ctl('a', [[0, 15]]));
    w.adopt('a2', ctl('a', [[0, 15]]));
    expect(w.closes.get('a2')).toBe(4003);
    expect(w.state.controls.get('a')?.conn).toBe('a1');
  });

  it('a standby is kept as a standby: no second CONNECT', () => {
    const w = new World(stored({ a: [[0, 15]] }));
    w.adopt('a1', ctl('a', [[0, 15]]));
    w.adopt('s1', ctl('s', [], { redundant: true }));
    expect(w.ops('s1')).toEqual([]);
    expect(w.state.controls.get('s')).toMatchObject({ started: true, redundant: true, conn: 's1' });
  });

  it('a CONTROL announced before its CONNECT joins the line like a late newcomer', () => {
    const w = new World(stored({ a: [[0, 15]] }));
    w.adopt('a1', ctl('a', [[0, 15]]));
    w.adopt('n1', ctl('n', [], { started: false }));
    expect(w.frames.get('n1')?.map((f) => [f.o, f.d])).toEqual([[Op.CONNECT, { shardRange: [], shards: [], redundant: true }]]);
  });

  it('a socket not yet identified gets a fresh identifyTimeout', () => {
    const w = new World(stored({ a: [[0, 15]] }));
    w.adopt('x1');
    w.advance(CFG.identifyTimeout - 1);
    expect(w.closes.has('x1')).toBe(false);
    w.advance(1);
    expect(w.closes.get('x1')).toBe(4002);
  });

  it('a halted fleet stays halted: an announced CONTROL gets SHUTDOWN and 4006', () => {
    const w = new World({ fleet: { halted: true, reason: 'FATAL from a', at: 5 } });
    w.adopt('a1', ctl('a', [[0, 15]]));
    expect(w.ops('a1')).toEqual([Op.SHUTDOWN, Op.ERROR]);
    expect(w.closes.get('a1')).toBe(4006);
  });

  it('the same socket announced twice is taken once', () => {
    const w = new World(stored({ a: [[0, 15]] }));
    w.adopt('a1', ctl('a', [[0, 15]]));
    w.adopt('a1', ctl('a', [[0, 15]]));
    expect(w.closes.size).toBe(0);
    expect(w.state.sockets.size).toBe(1);
  });
});
