import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { driveWorldModule } from '../support/world-driver.js';
import { initialWorld, step, timerId, worldSummary, type WorldConfig, type WorldEffect } from '../../src/dialects/discodo/world.js';

/**
 * The discodo world fed events with a manual clock: no socket, no scheduler, no runtime.
 * Timers are read off the effects (the test plays the runtime's part).
 */

const IDENTIFY = '{"op":"IDENTIFY","d":{"user_id":870000000000000123,"shard_id":1}}';
const KEY = '870000000000000123-1';
const vstate = (g: string, c: string): string =>
  `{"op":"DISCORD_EVENT","d":{"t":"VOICE_STATE_UPDATE","d":{"guild_id":${g},"channel_id":${c},"user_id":870000000000000123,"session_id":"s"}}}`;
const vserver = (g: string): string => `{"op":"DISCORD_EVENT","d":{"t":"VOICE_SERVER_UPDATE","d":{"guild_id":${g},"token":"t","endpoint":"e1"}}}`;

function harness(over: Partial<WorldConfig> = {}) {
  const clock = new ManualClock(1_000_000);
  let ids = 0;
  const cfg: WorldConfig = { heartbeatInterval: 15_000, handshakeTimeout: 60_000, version: 'muster-test', vcTimeout: 300_000, compat: 'seed', newId: () => `vc-${++ids}`, ...over };
  const d = driveWorldModule(clock, { initialWorld, step, timerId }, cfg);
  const { feed, advance, timers, out } = d;
  const open = (conn: string, forbidden?: string): WorldEffect[] => feed({ type: 'open', now: clock.now(), conn, forbidden });
  const frame = (conn: string, text: string): WorldEffect[] => feed({ type: 'frame', now: clock.now(), conn, data: Buffer.from(text), binary: false });
  const close = (conn: string): WorldEffect[] => feed({ type: 'closed', now: clock.now(), conn });
  const sent = (fx: WorldEffect[], conn: string): string[] =>
    fx.flatMap((e) => (e.type === 'send' && e.conn === conn ? [(JSON.parse(e.frame) as { op: string }).op] : []));
  return { clock, feed, advance, open, frame, close, sent, timers, out, world: d.state };
}

describe('discodo world', () => {
  it('HELLO on open with a silence deadline; 4000 after handshakeTimeout of silence', () => {
    const h = harness();
    expect(h.sent(h.open('a'), 'a')).toEqual(['HELLO']);
    expect([...h.timers.values()].map((t) => t.key)).toEqual([{ kind: 'silence', conn: 'a' }]);
    h.advance(30_000);
    h.frame('a', '{"op":"HEARTBEAT","d":1}');
    h.advance(59_999);
    expect(h.out.some((e) => e.type === 'close')).toBe(false);
    h.advance(1);
    expect(h.out.filter((e) => e.type === 'close')).toEqual([{ type: 'close', conn: 'a', code: 4000, reason: expect.any(String) }]);
    expect(h.timers.size).toBe(0);
  });

  it('refuses a socket without the password, with no deadline', () => {
    const h = harness();
    const fx = h.open('a', 'Password mismatch.');
    expect(h.sent(fx, 'a')).toEqual(['FORBIDDEN']);
    expect(fx.find((e) => e.type === 'close')).toMatchObject({ code: 4003 });
    expect(h.timers.size).toBe(0);
  });

  it('creates a session on IDENTIFY, and voice clients from voice events', () => {
    const h = harness();
    h.open('a');
    const fx = h.frame('a', IDENTIFY);
    expect(fx).toContainEqual({ type: 'identified', conn: 'a', key: KEY });
    expect(h.sent(fx, 'a')).toEqual(['IDENTIFIED']);
    h.frame('a', vstate('1', '10'));
    const created = h.frame('a', vserver('1'));
    expect(h.sent(created, 'a')).toEqual(['VC_CREATED']);
    expect(created).toContainEqual(expect.objectContaining({ type: 'voice', call: 'connect', session: KEY }));
    expect(worldSummary(h.world())).toMatchObject({ connections: 1, sessions: 1, liveSessions: 1, voiceClients: 1 });
  });

  it('keeps a dropped session exactly vcTimeout, then releases its voice clients', () => {
    const h = harness({ vcTimeout: 1000 });
    h.open('a');
    h.frame('a', IDENTIFY);
    h.frame('a', vstate('1', '10'));
    h.frame('a', vserver('1'));
    h.close('a');
    expect(worldSummary(h.world())).toMatchObject({ connections: 0, detachedSessions: 1, voiceClients: 1 });
    expect(h.world().sessions.get(KEY)?.detachedAt).toBe(h.clock.now());
    h.advance(999);
    expect(worldSummary(h.world()).sessions).toBe(1);
    h.advance(1);
    expect(worldSummary(h.world())).toMatchObject({ sessions: 0, voiceClients: 0 });
    expect(h.out).toContainEqual({ type: 'expired', session: KEY });
    expect(h.out).toContainEqual(expect.objectContaining({ type: 'voice', call: 'disconnect', reason: 'expired' }));
    expect(h.timers.size).toBe(0);
  });

  it('resumes a detached session within vcTimeout: RESUMED lists its voice clients, the expiry is cancelled', () => {
    const h = harness();
    h.open('a');
    h.frame('a', IDENTIFY);
    h.frame('a', vstate('1', '10'));
    h.frame('a', vserver('1'));
    h.close('a');
    h.advance(299_999);
    h.open('b');
    const fx = h.frame('b', IDENTIFY);
    expect(h.sent(fx, 'b')).toEqual(['IDENTIFIED', 'RESUMED']);
    expect(fx).toContainEqual({ type: 'resumed', kind: 'detached' });
    expect(fx).toContainEqual({ type: 'timer', key: { kind: 'expire', session: KEY }, at: null });
    h.advance(10_000);
    expect(worldSummary(h.world())).toMatchObject({ liveSessions: 1, voiceClients: 1 });
    expect(h.world().sessions.get(KEY)).toMatchObject({ attached: 'b', detachedAt: null });
  });

  it('takeover: the older socket is closed 4005, and its later close leaves the session with the newer one', () => {
    const h = harness();
    h.open('a');
    h.frame('a', IDENTIFY);
    h.open('b');
    const fx = h.frame('b', IDENTIFY);
    expect(fx).toContainEqual({ type: 'close', conn: 'a', code: 4005, reason: 'session taken over by a newer connection' });
    expect(fx).toContainEqual({ type: 'resumed', kind: 'takeover' });
    expect(h.timers.has('s:a')).toBe(false);
    // Frames on the old socket do nothing now.
    expect(h.frame('a', vstate('1', '10'))).toEqual([]);
    h.close('a');
    expect(h.world().sessions.get(KEY)).toMatchObject({ attached: 'b', detachedAt: null });
    expect(h.timers.has(`e:${KEY}`)).toBe(false);
  });

  it('STATUS and queries: STATUS is asked of the dialect, getState answers from the session', () => {
    const h = harness();
    h.open('a');
    h.frame('a', IDENTIFY);
    expect(h.frame('a', '{"op":"GET_STATUS"}')).toEqual([{ type: 'status', conn: 'a' }]);
    expect(h.sent(h.frame('a', '{"op":"getState","d":{"guild_id":1}}'), 'a')).toHaveLength(1);
  });

  it('shutdown releases every session, live and detached, and cancels expiries', () => {
    const h = harness();
    h.open('a');
    h.frame('a', IDENTIFY);
    h.frame('a', vstate('1', '10'));
    h.frame('a', vserver('1'));
    h.open('b');
    h.frame('b', '{"op":"IDENTIFY","d":{"user_id":5}}');
    h.frame('b', '{"op":"DISCORD_EVENT","d":{"t":"VOICE_STATE_UPDATE","d":{"guild_id":2,"channel_id":20,"user_id":5,"session_id":"s"}}}');
    h.frame('b', vserver('2'));
    h.close('b');
    const fx = h.feed({ type: 'shutdown', now: h.clock.now() });
    expect(fx.filter((e) => e.type === 'voice' && e.call === 'disconnect')).toHaveLength(2);
    expect(worldSummary(h.world())).toMatchObject({ sessions: 0, voiceClients: 0 });
    expect(h.timers.has('e:5')).toBe(false);
  });

  it('5,000 bots identify, drop and expire in one run, leaving nothing behind', () => {
    const h = harness({ vcTimeout: 1000 });
    for (let i = 0; i < 5000; i++) {
      h.open(`c${i}`);
      h.frame(`c${i}`, `{"op":"IDENTIFY","d":{"user_id":${1000 + i}}}`);
    }
    expect(worldSummary(h.world())).toMatchObject({ connections: 5000, liveSessions: 5000 });
    for (let i = 0; i < 5000; i++) h.close(`c${i}`);
    h.advance(1000);
    expect(worldSummary(h.world())).toMatchObject({ connections: 0, sessions: 0 });
    expect(h.timers.size).toBe(0);
  });
});
