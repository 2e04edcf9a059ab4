import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { busWorldConfig, driveBusWorld } from '../support/bus-world.js';
import { worldSummary, type BusWorldConfig, type Eff } from '../../src/dialects/bus/world.js';

/**
 * The bus world fed events with a manual clock: no socket, no scheduler, no runtime, no
 * Broker. Timers are read off the effects (the test plays the runtime's part).
 */

function harness(over: Partial<BusWorldConfig> = {}) {
  const clock = new ManualClock(1_000_000);
  const seen = new Map<string, number>();
  const cfg: BusWorldConfig = busWorldConfig({ lastSeen: (conn) => seen.get(conn) ?? 0, ...over });
  const d = driveBusWorld(clock, cfg);
  const { feed, advance } = d;
  const frame = (conn: string, msg: unknown): Eff[] => {
    seen.set(conn, clock.now());
    return feed({ type: 'frame', now: clock.now(), conn, data: Buffer.from(JSON.stringify(msg)), binary: false, headerToken: undefined });
  };
  const identify = (conn: string, data: Record<string, unknown> = {}): Eff[] => {
    feed({ type: 'open', now: clock.now(), conn, headerToken: undefined });
    return frame(conn, { op: 1, data: { token: 'tok', ...data } });
  };
  return { clock, cfg, feed, frame, identify, advance, seen, world: d.state };
}

/** Frames each connection gets, directly or through the Broker (`to: conn`), parsed. */
function framesTo(fx: Eff[], conn: string): unknown[] {
  const out: unknown[] = [];
  for (const e of fx) {
    if (e.type === 'send' && e.conn === conn) out.push(JSON.parse(e.frame.toString()));
    if (e.type === 'deliver' && e.target.to === 'conn' && e.target.conn === conn) out.push(JSON.parse(e.frame.toString()));
  }
  return out;
}

const ask = (id: string, to: string, extra: Record<string, unknown> = {}) => ({ op: 0, id, event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: to }, ...extra });

describe('bus world', () => {
  it('identifies a service: IDENTIFIED, on the Broker, in its groups; GLOBAL skips services not identified', () => {
    const h = harness();
    const fx = h.identify('a', { name: 'alpha', groups: ['g1'], group: 'g2' });
    expect(fx.filter((e) => e.type === 'enlist' || e.type === 'join')).toEqual([
      { type: 'enlist', conn: 'a', on: true },
      { type: 'join', group: 'g1', conn: 'a' },
      { type: 'join', group: 'g2', conn: 'a' },
    ]);
    expect(framesTo(fx, 'a')).toEqual([{ op: 1, data: { id: 'a', heartbeat_interval: 10_000 } }]);
    h.feed({ type: 'open', now: h.clock.now(), conn: 'b', headerToken: undefined });
    // Only `a` is identified, and a GLOBAL without `self` skips its sender: NO delivery.
    expect(h.frame('a', { op: 0, event: 'E', intent: { target: 'GLOBAL' } }).some((e) => e.type === 'deliver')).toBe(false);
    expect(worldSummary(h.world())).toEqual({ services: 1, connections: 2, groups: 2, pendingRequests: 0 });
  });

  it('routes a DIRECT request to the recipient with `source`, and its REPLY back to the requester', () => {
    const h = harness();
    h.identify('a');
    h.identify('b', { name: 'bee' });
    const fx = h.frame('a', ask('1', 'bee'));
    expect(fx.filter((e) => e.type === 'deliver').map((e) => e.type === 'deliver' && e.target)).toEqual([{ to: 'conn', conn: 'b' }]);
    expect(framesTo(fx, 'b')).toEqual([{ ...ask('1', 'bee'), source: 'a' }]);
    expect(worldSummary(h.world()).pendingRequests).toBe(1);
    h.clock.advance(2);
    const back = h.frame('b', { op: 5, id: '1', data: { ok: true } });
    expect(framesTo(back, 'a')).toEqual([{ op: 5, id: '1', data: { ok: true }, source: 'b' }]);
    expect(back).toContainEqual({ type: 'observe', outcome: 'complete', seconds: 0.002 });
    expect(worldSummary(h.world()).pendingRequests).toBe(0);
    // Answered already: dropped, counted.
    expect(h.frame('b', { op: 5, id: '1', data: {} })).toContainEqual({ type: 'count', metric: 'repliesDropped' });
  });

  it('keeps crossed requests apart: two requesters, the same id, the same recipient (issue #10)', () => {
    const h = harness();
    h.identify('a', { name: 'alice' });
    h.identify('b', { name: 'bob' });
    h.identify('c');
    h.frame('a', ask('x', 'c'));
    h.frame('b', ask('x', 'c'));
    expect(worldSummary(h.world()).pendingRequests).toBe(2);
    // Another service cannot answer either with the same id.
    expect(framesTo(h.frame('a', { op: 5, id: 'x', data: {} }), 'b')).toEqual([]);
    // A REPLY naming the requester answers that one, though it asked second.
    const toBob = h.frame('c', { op: 5, id: 'x', intent: { target: 'DIRECT', identifier: 'bob' }, data: 1 });
    expect(framesTo(toBob, 'b')).toEqual([{ op: 5, id: 'x', intent: { target: 'DIRECT', identifier: 'bob' }, data: 1, source: 'c' }]);
    expect(framesTo(toBob, 'a')).toEqual([]);
    // A plain one answers the oldest left: alice's.
    const plain = h.frame('c', { op: 5, id: 'x', data: 2 });
    expect(framesTo(plain, 'a')).toEqual([{ op: 5, id: 'x', data: 2, source: 'c' }]);
    expect(worldSummary(h.world()).pendingRequests).toBe(0);
    // Neither gets a TIMEOUT later.
    const later = h.advance(10_000);
    expect([...framesTo(later, 'a'), ...framesTo(later, 'b')].filter((f) => JSON.stringify(f).includes('TIMEOUT'))).toEqual([]);
  });

  it('answers TIMEOUT at the request timeout, and a GROUP collection with REPLY_END and who is missing', () => {
    const h = harness();
    h.identify('a');
    h.identify('b', { group: 'g' });
    h.identify('c', { group: 'g' });
    h.frame('a', ask('d', 'b'));
    h.clock.advance(1000);
    h.frame('a', { op: 0, id: 'g', event: 'ASK', expect_reply: 'all', intent: { target: 'GROUP', identifier: 'g' } });
    h.frame('c', { op: 5, id: 'g', data: {} });
    expect(framesTo(h.advance(3_999), 'a')).toEqual([]);
    expect(framesTo(h.advance(1), 'a')).toEqual([{ op: 5, id: 'd', data: { error: 'TIMEOUT' } }]);
    expect(framesTo(h.advance(999), 'a')).toEqual([]);
    expect(framesTo(h.advance(1), 'a')).toEqual([{ op: 5, id: 'g', event: 'REPLY_END', data: { received: 1, expected: 2, missing: ['b'] } }]);
    // Too late: dropped.
    expect(h.frame('b', { op: 5, id: 'd', data: {} })).toContainEqual({ type: 'count', metric: 'repliesDropped' });
    expect(worldSummary(h.world()).pendingRequests).toBe(0);
  });

  it('answers NO_ROUTE for a name nobody has, an empty group, and a DIRECT request whose recipient leaves', () => {
    const h = harness();
    h.identify('a');
    h.identify('b');
    expect(framesTo(h.frame('a', ask('1', 'nobody')), 'a')).toEqual([{ op: 5, id: '1', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'nobody' } }]);
    expect(framesTo(h.frame('a', { op: 0, id: '2', event: 'E', intent: { target: 'GROUP', identifier: 'none' } }), 'a')).toEqual([
      { op: 5, id: '2', data: { error: 'NO_ROUTE', target: 'GROUP', identifier: 'none' } },
    ]);
    h.frame('a', ask('3', 'b'));
    const gone = h.feed({ type: 'closed', now: h.clock.now(), conn: 'b' });
    expect(framesTo(gone, 'a')).toEqual([{ op: 5, id: '3', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'b' } }]);
    expect(gone).toContainEqual({ type: 'enlist', conn: 'b', on: false });
    expect(worldSummary(h.world())).toEqual({ services: 1, connections: 1, groups: 0, pendingRequests: 0 });
  });

  it('treats a recipient cut as a slow consumer while the request is delivered as never asked', () => {
    const h = harness();
    h.identify('a');
    h.identify('b', { group: 'g' });
    h.identify('c', { group: 'g' });
    h.frame('a', ask('d', 'b'));
    // The runtime runs the deliver; the recipient's socket is found slow during it.
    const cut = h.feed({ type: 'slow', now: h.clock.now(), conn: 'b', buffered: 1 << 21, during: true });
    expect(framesTo(cut, 'a')).toEqual([{ op: 5, id: 'd', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'b' } }]);
    expect(cut.some((e) => e.type === 'observe')).toBe(false);
    expect(cut).toContainEqual({ type: 'disconnect', conn: 'b', reason: 'SLOW_CONSUMER', detail: `more than ${1 << 20} bytes unread` });
  });

  it('expects one reply fewer from a collection whose member is cut while it is delivered, and does not list it as missing', () => {
    const h = harness();
    h.identify('a');
    h.identify('b', { group: 'g' });
    h.identify('c', { group: 'g' });
    h.frame('a', { op: 0, id: 'g', event: 'ASK', expect_reply: 'all', intent: { target: 'GROUP', identifier: 'g' } });
    h.feed({ type: 'slow', now: h.clock.now(), conn: 'c', buffered: 1 << 21, during: true });
    const end = h.frame('b', { op: 5, id: 'g', data: {} });
    expect(framesTo(end, 'a')).toEqual([
      { op: 5, id: 'g', data: {}, source: 'b' },
      { op: 5, id: 'g', event: 'REPLY_END', data: { received: 1, expected: 1, missing: [] } },
    ]);
  });

  it('refuses EVENTs over the sender rate with RATE_LIMITED and retry_after, and delivers nothing', () => {
    const h2 = harness({ limited: true, eventRate: { perSecond: 1, burst: 2 }, byteRate: { perSecond: 1e9, burst: 1e9 } });
    h2.identify('a');
    h2.identify('b');
    const ev = { op: 0, id: 'r', event: 'E', intent: { target: 'DIRECT', identifier: 'b' } };
    expect(h2.frame('a', ev).some((e) => e.type === 'deliver')).toBe(true);
    expect(h2.frame('a', ev).some((e) => e.type === 'deliver')).toBe(true);
    const over = h2.frame('a', ev);
    expect(over.some((e) => e.type === 'deliver')).toBe(false);
    expect(framesTo(over, 'a')).toEqual([{ op: 5, id: 'r', data: { error: 'RATE_LIMITED', retry_after: 1000 } }]);
    expect(over).toContainEqual({ type: 'count', metric: 'rateLimited' });
    h2.clock.advance(1000);
    expect(h2.frame('a', ev).some((e) => e.type === 'deliver')).toBe(true);
  });

  it('closes a connection that does not identify in time, pings identified ones, and cuts a silent one', () => {
    const h = harness();
    h.feed({ type: 'open', now: h.clock.now(), conn: 'slow', headerToken: undefined });
    h.identify('a');
    expect(h.advance(2_999).some((e) => e.type === 'disconnect')).toBe(false);
    expect(h.advance(1)).toContainEqual({ type: 'disconnect', conn: 'slow', reason: 'IDENTIFY_TIMEOUT', detail: undefined });
    h.seen.set('a', h.clock.now());
    expect(framesTo(h.advance(7_000), 'a')).toEqual([{ op: 3 }]);
    expect(framesTo(h.advance(10_000), 'a')).toEqual([{ op: 3 }]);
    expect(h.advance(10_000)).toContainEqual({ type: 'disconnect', conn: 'a', reason: 'PING_TIMEOUT', detail: undefined });
    expect(worldSummary(h.world()).services).toBe(0);
  });
});
