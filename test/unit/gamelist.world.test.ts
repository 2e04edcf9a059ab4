import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { driveWorldModule } from '../support/world-driver.js';
import { gamelistWorldConfig, JOIN, registerText } from '../support/gamelist-world.js';
import { initialWorld, step, timerId, worldSummary, type WorldConfig, type WorldEffect } from '../../src/dialects/gamelist/world.js';

/**
 * The gamelist world fed events with a manual clock: no socket, no scheduler, no runtime.
 * Timers are read off the effects (the test plays the runtime's part).
 */

const reg = (token = 'tok', id = 1, over: Record<string, unknown> = {}): string => registerText(token, id, over);

function harness(over: Partial<WorldConfig> = {}) {
  const clock = new ManualClock(1_000_000);
  const cfg = gamelistWorldConfig(over);
  const d = driveWorldModule(clock, { initialWorld, step, timerId }, cfg);
  const { feed, advance, timers, out } = d;
  const open = (conn: string, address = '10.0.0.1'): WorldEffect[] => feed({ type: 'open', now: clock.now(), conn, address });
  const frame = (conn: string, text: string): WorldEffect[] => feed({ type: 'frame', now: clock.now(), conn, data: Buffer.from(text), binary: false });
  const closed = (conn: string): WorldEffect[] => feed({ type: 'closed', now: clock.now(), conn });
  const join = (call: string, serverId: string, body: unknown = JOIN): WorldEffect[] => feed({ type: 'join', now: clock.now(), call, serverId, body });
  const sent = (fx: WorldEffect[], conn: string): unknown[] => fx.flatMap((e) => (e.type === 'send' && e.conn === conn ? [JSON.parse(e.frame)] : []));
  const closes = (fx: WorldEffect[]): Array<{ conn: string; code: number }> => fx.flatMap((e) => (e.type === 'close' ? [{ conn: e.conn, code: e.code }] : []));
  const replies = (fx: WorldEffect[]): Array<{ call: string | undefined; status: number; body: unknown }> =>
    fx.flatMap((e) => (e.type === 'reply' ? [{ call: e.call, status: e.status, body: e.body }] : []));
  /** Opens `conn` and lists it; returns its server id. */
  const listed = (conn: string, address = '10.0.0.1', over: Record<string, unknown> = {}): string => {
    open(conn, address);
    const r = sent(frame(conn, reg('tok', 1, over)), conn)[0] as { server_id: string };
    return r.server_id;
  };
  return { clock, cfg, feed, advance, open, frame, closed, join, sent, closes, replies, listed, timers, out, world: d.state };
}

describe('gamelist world: registrations', () => {
  it('lists a server with a fresh id on its first registration, refreshes on the next', () => {
    const h = harness();
    h.open('a');
    const fx = h.frame('a', reg('tok', 7));
    expect(h.sent(fx, 'a')).toEqual([{ metadata: { type: -1, id: 7 }, success: true, server_id: 'srv-1' }]);
    expect(fx).toContainEqual({ type: 'list', change: 'listed', serverId: 'srv-1', servers: 1 });
    expect(fx).toContainEqual({ type: 'authenticated', conn: 'a' });
    expect(h.world().listed.get('srv-1')).toMatchObject({ conn: 'a', address: '10.0.0.1', registeredAt: 1_000_000 });
    expect(h.timers.has('d:a')).toBe(false);
    h.clock.advance(1_000);
    const again = h.frame('a', reg('tok', 8, { name: 'renamed' }));
    expect(h.sent(again, 'a')).toEqual([{ metadata: { type: -1, id: 8 }, success: true }]);
    expect(h.world().listed.get('srv-1')).toMatchObject({ lastRefresh: 1_001_000, info: { name: 'renamed' } });
    expect(again).toContainEqual({ type: 'count', metric: 'registrations', result: 'refreshed' });
  });

  it('refuses an invalid token with error 1, and a registration past the per-address limit with SERVER_LIMIT', () => {
    const h = harness({ maxServersPerIp: 1 });
    h.open('a');
    const bad = h.frame('a', reg('nope', 2));
    expect(h.sent(bad, 'a')).toEqual([{ metadata: { type: -1, id: 2 }, success: false, error: { type: 1, msg: 'Invalid registration token' } }]);
    expect(bad).toContainEqual({ type: 'auth-failed', conn: 'a', detail: 'registration with an invalid token' });
    h.listed('b', '10.0.0.2');
    h.listed('c', '10.0.0.3');
    h.open('d', '10.0.0.3');
    const fx = h.frame('d', reg('tok', 3));
    expect(fx).toContainEqual({ type: 'count', metric: 'registrations', result: 'server_limit' });
    expect((h.sent(fx, 'd')[0] as { success: boolean }).success).toBe(false);
    expect(h.world().listed.size).toBe(2);
  });

  it('unlists a server whose registration is not refreshed within registrationTtl, keeping the socket', () => {
    const h = harness({ pingInterval: 1e9 });
    const id = h.listed('a');
    h.frame('a', '{"metadata":{"type":-2,"id":99},"success":true}');
    h.advance(20_000);
    h.frame('a', reg('tok', 2));
    // 30 s after the listing: refreshed 10 s ago, still listed.
    h.advance(10_000);
    expect(h.world().listed.has(id)).toBe(true);
    const fx = h.advance(20_000);
    expect(fx).toContainEqual({ type: 'list', change: 'unlisted', serverId: id, servers: 0 });
    expect(h.world().listed.has(id)).toBe(false);
    expect(h.world().peers.has('a')).toBe(true);
    // Its next registration lists it again under the same id.
    const back = h.sent(h.frame('a', reg('tok', 3)), 'a');
    expect(back).toEqual([{ metadata: { type: -1, id: 3 }, success: true }]);
    expect(h.world().listed.has(id)).toBe(true);
  });

  it('keeps a closed server id for the same (regToken, name, port) from the same address only, for registrationTtl', () => {
    const h = harness({ pingInterval: 1e9 });
    const id = h.listed('a', '10.0.0.1');
    h.closed('a');
    expect(worldSummary(h.world()).reservedIds).toBe(1);
    // Same token, name and port from another address: a fresh id.
    expect(h.listed('b', '10.0.0.9')).not.toBe(id);
    // Another port from the same address: a fresh id.
    expect(h.listed('c', '10.0.0.1', { port: 1 })).not.toBe(id);
    // The same key from the same address: the kept id.
    expect(h.listed('d', '10.0.0.1')).toBe(id);
    expect(worldSummary(h.world()).reservedIds).toBe(0);
    h.closed('d');
    h.advance(30_000);
    expect(worldSummary(h.world()).reservedIds).toBe(0);
    expect(h.listed('e', '10.0.0.1')).not.toBe(id);
  });

  it('closes with 1001 a socket that is not listed within registrationTtl, even if it answers pings', () => {
    const h = harness();
    h.open('a');
    h.open('b');
    h.frame('b', reg('tok', 1));
    let fx: WorldEffect[] = [];
    for (let i = 0; i < 3; i++) {
      fx = h.advance(10_000);
      h.feed({ type: 'pong', now: h.clock.now(), conn: 'a' });
      h.feed({ type: 'pong', now: h.clock.now(), conn: 'b' });
    }
    expect(h.closes(fx)).toEqual([{ conn: 'a', code: 1001 }]);
    expect(fx).toContainEqual({ type: 'close', conn: 'a', code: 1001, reason: 'no registration within 30000 ms' });
    h.closed('a');
    expect([...h.timers.keys()].filter((k) => k.endsWith(':a'))).toEqual([]);
  });
});

describe('gamelist world: liveness', () => {
  it('pings every pingInterval and closes with 1001 when no pong comes within pongTimeout', () => {
    const h = harness();
    const id = h.listed('a');
    const first = h.advance(10_000);
    expect(first).toContainEqual({ type: 'ping', conn: 'a' });
    h.feed({ type: 'pong', now: h.clock.now(), conn: 'a' });
    expect(h.timers.has('o:a')).toBe(false);
    expect(h.advance(10_000)).toContainEqual({ type: 'ping', conn: 'a' });
    const late = h.advance(5_000);
    expect(late).toContainEqual({ type: 'close', conn: 'a', code: 1001, reason: 'no pong within pongTimeout' });
    expect(late).toContainEqual({ type: 'list', change: 'unlisted', serverId: id, servers: 0 });
    expect(h.advance(60_000).filter((e) => e.type === 'ping')).toEqual([]);
  });
});

describe('gamelist world: joins', () => {
  it('forwards a join to the game server and answers the call with its response', () => {
    const h = harness();
    const id = h.listed('a');
    const fx = h.join('q1', id);
    expect(h.sent(fx, 'a')).toEqual([{ metadata: { type: 2, id: 1 }, sessionToken: 's', username: 'u', clantag: '', conv: 1 }]);
    expect(h.replies(fx)).toEqual([]);
    const answer = h.frame('a', '{"metadata":{"type":-2,"id":1},"success":true}');
    expect(h.replies(answer)).toEqual([{ call: 'q1', status: 200, body: { success: true, conv: 1 } }]);
    expect(answer).toContainEqual({ type: 'count', metric: 'joins', result: 'success' });
    expect(h.timers.has('j:1')).toBe(false);
    expect(worldSummary(h.world()).pendingJoins).toBe(0);
  });

  it('answers 504 when the game server does not answer within joinTimeout', () => {
    const h = harness();
    const id = h.listed('a');
    h.join('q1', id);
    expect(h.replies(h.advance(2_999))).toEqual([]);
    expect(h.replies(h.advance(1))).toEqual([
      { call: 'q1', status: 504, body: { success: false, conv: 1, error: { type: 'TIMEOUT', msg: 'The game server did not answer within 3000 ms' } } },
    ]);
    // A late answer is ignored.
    expect(h.replies(h.frame('a', '{"metadata":{"type":-2,"id":1},"success":true}'))).toEqual([]);
  });

  it('ignores an answer from another game server, and answers 502 when the asked one goes away', () => {
    const h = harness();
    const id = h.listed('a');
    h.listed('b', '10.0.0.2');
    h.join('q1', id);
    const wrong = h.frame('b', '{"metadata":{"type":-2,"id":1},"success":true}');
    expect(h.replies(wrong)).toEqual([]);
    expect(wrong.some((e) => e.type === 'log' && e.msg === 'gamelist: response to an unknown id ignored')).toBe(true);
    const gone = h.closed('a');
    expect(h.replies(gone)).toEqual([
      { call: 'q1', status: 502, body: { success: false, conv: 1, error: { type: 'SERVER_GONE', msg: 'The game server went away before answering' } } },
    ]);
  });

  it('answers 404 for an unlisted server, 403 for a wrong password, 400 for a bad body, at once', () => {
    const h = harness();
    const id = h.listed('a', '10.0.0.1', { password: 'pw' });
    expect(h.replies(h.join('q1', 'nope'))).toEqual([
      { call: 'q1', status: 404, body: { success: false, error: { type: 'NOT_FOUND', msg: 'No listed server nope' } } },
    ]);
    expect(h.replies(h.join('q2', id, { ...JOIN, password: 'x' }))[0]).toMatchObject({ call: 'q2', status: 403 });
    expect(h.replies(h.join('q3', id, { password: 'pw' }))[0]).toMatchObject({ call: 'q3', status: 400 });
    expect(h.replies(h.join('q4', id, { ...JOIN, password: 'pw' }))).toEqual([]);
    expect(worldSummary(h.world()).pendingJoins).toBe(1);
  });

  it('answers 502 with a conv, and sends nothing, when the listed socket takes no more frames', () => {
    const h = harness();
    const id = h.listed('a');
    const fx = h.feed({ type: 'join', now: h.clock.now(), call: 'q1', serverId: id, body: JOIN, unreachable: true });
    expect(h.sent(fx, 'a')).toEqual([]);
    expect(h.replies(fx)).toEqual([
      { call: 'q1', status: 502, body: { success: false, conv: 1, error: { type: 'SERVER_GONE', msg: 'The game server cannot take the request' } } },
    ]);
    expect(worldSummary(h.world()).pendingJoins).toBe(0);
    expect(h.world().convs.size).toBe(0);
  });

  it('answers waiting joins with 503 on shutdown and drops kept ids', () => {
    const h = harness();
    const id = h.listed('a');
    h.listed('b', '10.0.0.2');
    h.closed('b');
    h.join('q1', id);
    const fx = h.feed({ type: 'shutdown', now: h.clock.now() });
    expect(h.replies(fx)[0]).toMatchObject({ call: 'q1', status: 503 });
    expect(worldSummary(h.world())).toMatchObject({ pendingJoins: 0, reservedIds: 0 });
  });
});
