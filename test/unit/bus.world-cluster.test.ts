import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { decodeClusterMsg, encodeClusterMsg } from '../../src/dialects/bus/cluster-wire.js';
import { worldSummary, type BusWorldConfig, type ClusterMsg, type Eff, type WorldEvent } from '../../src/dialects/bus/world.js';
import { busWorldConfig, driveBusWorld } from '../support/bus-world.js';

/**
 * The bus world across instances, fed events: two worlds ("i1", "i2") on one manual clock,
 * each one's `cluster` effects fed to the other as `remote` events (what the glue and the
 * Broker do). No socket, runtime or Redis.
 */

const cfg: BusWorldConfig = busWorldConfig();

type Name = 'i1' | 'i2';

function instance(clock: ManualClock) {
  return driveBusWorld(clock, cfg);
}

function twoInstances() {
  const clock = new ManualClock(1_000_000);
  const w = { i1: instance(clock), i2: instance(clock) };
  /** Every effect each side produced, in order (cluster traffic included). */
  const log: Record<Name, Eff[]> = { i1: [], i2: [] };
  /** Cluster messages in flight (held with `hold`, to test races). */
  let held = false;
  const queue: Array<{ from: Name; to: Name; msg: ClusterMsg }> = [];
  const other = (n: Name): Name => (n === 'i1' ? 'i2' : 'i1');
  const flush = (): void => {
    while (!held && queue.length > 0) {
      const m = queue.shift() as { from: Name; to: Name; msg: ClusterMsg };
      // Through the wire format, as the glue carries it.
      const d = decodeClusterMsg(encodeClusterMsg(m.from, m.msg));
      if (!d) throw new Error('undecodable');
      run(m.to, { type: 'remote', now: clock.now(), from: d.from, msg: d.msg });
    }
  };
  const collect = (n: Name, fx: Eff[]): Eff[] => {
    log[n].push(...fx);
    for (const e of fx) {
      if (e.type !== 'cluster') continue;
      if (e.to === null || e.to === other(n)) queue.push({ from: n, to: other(n), msg: e.msg });
    }
    return fx;
  };
  const run = (n: Name, ev: WorldEvent): Eff[] => collect(n, w[n].feed(ev));
  const frame = (n: Name, conn: string, msg: unknown): Eff[] => {
    const fx = run(n, { type: 'frame', now: clock.now(), conn, data: Buffer.from(JSON.stringify(msg)), binary: false, headerToken: undefined });
    flush();
    return fx;
  };
  const identify = (n: Name, conn: string, data: Record<string, unknown> = {}): Eff[] => {
    run(n, { type: 'open', now: clock.now(), conn, headerToken: undefined });
    return frame(n, conn, { op: 1, data: { token: 'tok', ...data } });
  };
  const since = (n: Name, mark: number): Eff[] => log[n].slice(mark);
  const advance = (ms: number): void => {
    // Both worlds' timers, in time order (each driver moves the shared clock).
    const target = clock.now() + ms;
    for (;;) {
      const next = (['i1', 'i2'] as const)
        .flatMap((n) => [...w[n].timers.values()].map((t) => ({ n, at: t.at })))
        .filter((t) => t.at <= target)
        .sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      collect(next.n, w[next.n].advance(Math.max(0, next.at - clock.now())));
      flush();
    }
    clock.advance(target - clock.now());
  };
  const peer = (n: Name, instance: Name, up: boolean): Eff[] => {
    const fx = run(n, { type: 'peer', now: clock.now(), instance, up });
    flush();
    return fx;
  };
  return {
    clock,
    w,
    log,
    frame,
    identify,
    since,
    advance,
    peer,
    remote: (n: Name, from: Name, msg: ClusterMsg): Eff[] => {
      const fx = run(n, { type: 'remote', now: clock.now(), from, msg });
      flush();
      return fx;
    },
    hold: (on: boolean) => {
      held = on;
      flush();
    },
    /** Loses the held messages `lost` picks (an outage). */
    drop: (lost: (m: ClusterMsg) => boolean) => {
      const keep = queue.filter((m) => !lost(m.msg));
      queue.length = 0;
      queue.push(...keep);
    },
  };
}

/** What `conn` gets: frames sent to it, and Broker deliveries naming it (parsed). */
function framesTo(fx: Eff[], conn: string): unknown[] {
  const out: unknown[] = [];
  for (const e of fx) {
    const f = e.type === 'send' && e.conn === conn ? e.frame : e.type === 'deliver' && ((e.target.to === 'conn' && e.target.conn === conn) || (e.target.to === 'requester' && e.target.requester.conn === conn)) ? e.frame : undefined;
    if (f !== undefined) out.push(JSON.parse(f.toString()));
  }
  return out;
}

const ask = (id: string, to: string) => ({ op: 0, id, event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: to } });

describe('bus world across instances', () => {
  it('knows the services of the other instance: names, groups, DIRECT and GROUP through the Broker; counts its own', () => {
    const c = twoInstances();
    c.identify('i1', 'a', { name: 'alpha' });
    c.identify('i2', 'b', { name: 'bee', group: 'g' });
    expect(worldSummary(c.w.i1.state())).toEqual({ services: 1, connections: 1, groups: 1, pendingRequests: 0 });
    // DIRECT by name to a service elsewhere: a delivery to it at its instance.
    const fx = c.frame('i1', 'a', { op: 0, event: 'HI', intent: { target: 'DIRECT', identifier: 'bee' } });
    expect(fx.filter((e) => e.type === 'deliver').map((e) => e.type === 'deliver' && e.target)).toEqual([{ to: 'requester', requester: { instance: 'i2', conn: 'b' } }]);
    expect(framesTo(fx, 'b')).toEqual([{ op: 0, event: 'HI', intent: { target: 'DIRECT', identifier: 'bee' }, source: 'a' }]);
    // GROUP with members only elsewhere: routed (no NO_ROUTE), through the Broker's group.
    const g = c.frame('i1', 'a', { op: 0, id: 'x', event: 'G', intent: { target: 'GROUP', identifier: 'g' } });
    expect(g.filter((e) => e.type === 'deliver').map((e) => e.type === 'deliver' && e.target)).toEqual([{ to: 'group', group: 'g', except: 'a' }]);
    expect(g).not.toContainEqual({ type: 'count', metric: 'noRoute' });
    // The name is taken cluster-wide.
    const dup = c.identify('i1', 'z', { name: 'bee' });
    expect(dup).toContainEqual(expect.objectContaining({ type: 'disconnect', conn: 'z', reason: 'NAME_TAKEN' }));
  });

  it('carries a DIRECT request to the other instance and its REPLY back; a REPLY from one not asked is dropped on both sides', () => {
    const c = twoInstances();
    c.identify('i1', 'a');
    c.identify('i2', 'b', { name: 'bee' });
    c.identify('i2', 'c');
    const m1 = c.log.i1.length;
    const m2 = c.log.i2.length;
    const fx = c.frame('i1', 'a', ask('1', 'bee'));
    // Not through the Broker: as an ask, with what i2 must know.
    expect(fx.some((e) => e.type === 'deliver')).toBe(false);
    expect(fx).toContainEqual(expect.objectContaining({ type: 'cluster', to: 'i2', msg: expect.objectContaining({ t: 'ask', requester: 'a', id: '1', to: ['b'], collect: false }) }));
    expect(framesTo(c.since('i2', m2), 'b')).toEqual([{ ...ask('1', 'bee'), source: 'a' }]);
    expect(worldSummary(c.w.i1.state()).pendingRequests).toBe(1);
    // c was not asked: dropped at i2, nothing goes to i1.
    expect(c.frame('i2', 'c', { op: 5, id: '1', data: 'forged' })).toContainEqual({ type: 'count', metric: 'repliesDropped' });
    // Nor does i1 take a reply for c that i2 might claim.
    expect(c.remote('i1', 'i2', { t: 'reply', svc: 'c', requester: 'a', id: '1', frame: Buffer.from('{}') })).toContainEqual({ type: 'count', metric: 'repliesDropped' });
    c.clock.advance(3);
    c.frame('i2', 'b', { op: 5, id: '1', data: { ok: true } });
    const back = c.since('i1', m1);
    expect(framesTo(back, 'a')).toEqual([{ op: 5, id: '1', data: { ok: true }, source: 'b' }]);
    expect(back).toContainEqual({ type: 'observe', outcome: 'complete', seconds: 0.003 });
    expect(worldSummary(c.w.i1.state()).pendingRequests).toBe(0);
    expect(worldSummary(c.w.i2.state()).pendingRequests).toBe(0);
    // Answered already.
    expect(c.frame('i2', 'b', { op: 5, id: '1', data: {} })).toContainEqual({ type: 'count', metric: 'repliesDropped' });
  });

  it('answers TIMEOUT on the requester side; the other side forgets silently', () => {
    const c = twoInstances();
    c.identify('i1', 'a');
    c.identify('i2', 'b');
    c.frame('i1', 'a', ask('t', 'b'));
    const m1 = c.log.i1.length;
    const m2 = c.log.i2.length;
    c.advance(5_000);
    expect(framesTo(c.since('i1', m1), 'a')).toEqual([{ op: 5, id: 't', data: { error: 'TIMEOUT' } }]);
    expect(c.since('i2', m2).filter((e) => e.type === 'send' || e.type === 'cluster' || e.type === 'deliver')).toEqual([]);
    expect(worldSummary(c.w.i2.state()).pendingRequests).toBe(0);
  });

  it('collects a GROUP request from members here and there: local ones through the Broker here only, REPLY_END at the end', () => {
    const c = twoInstances();
    c.identify('i1', 'a');
    c.identify('i1', 'l', { group: 'g' });
    c.identify('i2', 'b', { group: 'g' });
    c.identify('i2', 'b2', { group: 'g' });
    const m1 = c.log.i1.length;
    const fx = c.frame('i1', 'a', { op: 0, id: 'q', event: 'Q', expect_reply: 'all', intent: { target: 'GROUP', identifier: 'g' } });
    expect(fx.filter((e) => e.type === 'deliver').map((e) => e.type === 'deliver' && e.target)).toEqual([{ to: 'group', group: 'g', except: 'a', local: true }]);
    expect(fx).toContainEqual(expect.objectContaining({ type: 'cluster', to: 'i2', msg: expect.objectContaining({ t: 'ask', to: ['b', 'b2'], collect: true }) }));
    c.frame('i1', 'l', { op: 5, id: 'q', data: 'l' });
    c.frame('i2', 'b', { op: 5, id: 'q', data: 'b' });
    // b2 leaves before answering: i1 hears it is gone and ends the collection.
    const before = c.log.i1.length;
    c.frame('i2', 'b2', { op: 2, data: { reason: 'bye' } });
    const end = framesTo(c.since('i1', before), 'a');
    expect(end).toEqual([{ op: 5, id: 'q', event: 'REPLY_END', data: { received: 2, expected: 3, missing: ['b2'] } }]);
    expect(framesTo(c.since('i1', m1), 'a').map((f) => (f as { data: unknown }).data)).toEqual(['l', 'b', { received: 2, expected: 3, missing: ['b2'] }]);
    expect(worldSummary(c.w.i2.state()).pendingRequests).toBe(0);
  });

  it('when the other instance goes, its services go: a pending DIRECT request gets NO_ROUTE at once, new ones too', () => {
    const c = twoInstances();
    c.identify('i1', 'a');
    c.identify('i2', 'b', { name: 'bee', group: 'g' });
    c.frame('i1', 'a', ask('p', 'bee'));
    const fx = c.peer('i1', 'i2', false);
    expect(framesTo(fx, 'a')).toEqual([{ op: 5, id: 'p', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'bee' } }]);
    expect(worldSummary(c.w.i1.state())).toEqual({ services: 1, connections: 1, groups: 0, pendingRequests: 0 });
    expect(framesTo(c.frame('i1', 'a', ask('p2', 'bee')), 'a')).toEqual([{ op: 5, id: 'p2', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'bee' } }]);
  });

  it('syncs a peer that comes up: each side sends all its services and asks for the other\'s; a sync replaces what was held', () => {
    const c = twoInstances();
    c.hold(true);
    c.identify('i1', 'a', { name: 'alpha' });
    c.identify('i2', 'b', { name: 'bee' });
    c.identify('i2', 'b2');
    // Announcements lost, as in an outage: nobody knows the other side.
    c.drop(() => true);
    c.hold(false);
    const state1 = c.w.i1.state();
    const state2 = c.w.i2.state();
    expect(state1.byId.has('b')).toBe(false);
    // A sync replaces what i1 held of i2.
    c.remote('i1', 'i2', { t: 'sync', services: [{ id: 'b', name: 'bee', groups: [] }, { id: 'gone-meanwhile', groups: ['g'] }], ask: false });
    expect([...state1.byId.keys()]).toEqual(['a', 'b', 'gone-meanwhile']);
    c.remote('i1', 'i2', { t: 'sync', services: [{ id: 'b', name: 'bee', groups: [] }], ask: false });
    expect([...state1.byId.keys()]).toEqual(['a', 'b']);
    expect(state1.groups.size).toBe(0);
    // i2 comes up (for i1): i1 sends its services and asks for i2's, which answers.
    const m2 = c.log.i2.length;
    c.peer('i1', 'i2', true);
    expect(c.since('i2', m2)).toContainEqual({ type: 'cluster', to: 'i1', msg: { t: 'sync', services: [{ id: 'b', name: 'bee', groups: [] }, { id: 'b2', groups: [] }], ask: false } });
    expect([...state1.byId.keys()]).toEqual(['a', 'b', 'b2']);
    expect([...state2.byId.keys()]).toEqual(['b', 'b2', 'a']);
    expect(state2.names.get('alpha')?.instance).toBe('i1');
  });

  it('answers NO_ROUTE at once when the asked service had left the other instance before the request came', () => {
    const c = twoInstances();
    c.identify('i1', 'a');
    c.identify('i2', 'b');
    c.hold(true);
    c.frame('i1', 'a', ask('r', 'b'));
    c.frame('i2', 'b', { op: 2, data: { reason: 'bye' } });
    // i2's "down" is lost: only its answer to the ask tells i1.
    c.drop((m) => m.t === 'down');
    const m1 = c.log.i1.length;
    c.hold(false);
    expect(framesTo(c.since('i1', m1), 'a')).toEqual([{ op: 5, id: 'r', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'b' } }]);
    expect(worldSummary(c.w.i1.state()).pendingRequests).toBe(0);
  });

  it('forgets what a gone instance\'s requesters asked here', () => {
    const c = twoInstances();
    c.identify('i1', 'a');
    c.identify('i2', 'b');
    c.frame('i1', 'a', ask('s', 'b'));
    expect(worldSummary(c.w.i2.state()).pendingRequests).toBe(1);
    c.peer('i2', 'i1', false);
    expect(worldSummary(c.w.i2.state()).pendingRequests).toBe(0);
    // b's late REPLY answers nothing now.
    expect(c.frame('i2', 'b', { op: 5, id: 's', data: {} })).toContainEqual({ type: 'count', metric: 'repliesDropped' });
  });
});
