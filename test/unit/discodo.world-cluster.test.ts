import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { driveWorld, type WorldDriver } from '../support/world-driver.js';
import { decodeClusterMsg, encodeClusterMsg, type ClusterMsg } from '../../src/dialects/discodo/cluster-wire.js';
import { initialWorld, step, timerId, worldSummary, type DiscodoWorld, type TimerKey, type WorldConfig, type WorldEffect, type WorldEvent } from '../../src/dialects/discodo/world.js';

/**
 * Discodo sessions across instances, as pure worlds on one manual clock: each "instance"
 * is a world; the test plays the broker, holding the messages the worlds send each other
 * until it delivers them (so it chooses the interleaving).
 */

const IDENTIFY = '{"op":"IDENTIFY","d":{"user_id":870000000000000123,"shard_id":1}}';
const KEY = '870000000000000123-1';
const vstate = (g: string, c: string): string =>
  `{"op":"DISCORD_EVENT","d":{"t":"VOICE_STATE_UPDATE","d":{"guild_id":${g},"channel_id":${c},"user_id":870000000000000123,"session_id":"s"}}}`;
const vserver = (g: string): string => `{"op":"DISCORD_EVENT","d":{"t":"VOICE_SERVER_UPDATE","d":{"guild_id":${g},"token":"t","endpoint":"e1"}}}`;

interface Inst {
  name: string;
  d: WorldDriver<DiscodoWorld, WorldEvent, WorldEffect, TimerKey>;
}

function cluster(names: string[], over: Partial<WorldConfig> = {}) {
  const clock = new ManualClock(1_000_000);
  /** Messages in flight: from, to, msg (the wire's bytes, decoded again on delivery). */
  const wire: Array<{ from: string; to: string; bytes: Buffer }> = [];
  const insts = new Map<string, Inst>();
  const route = (from: string, fx: WorldEffect[]): void => {
    for (const e of fx) {
      if (e.type !== 'cluster') continue;
      const bytes = encodeClusterMsg(from, e.msg);
      for (const to of e.to === null ? names.filter((n) => n !== from) : [e.to]) wire.push({ from, to, bytes });
    }
  };
  for (const name of names) {
    let ids = 0;
    const cfg: WorldConfig = { heartbeatInterval: 15_000, handshakeTimeout: 60_000, version: 'muster-test', vcTimeout: 300_000, compat: 'seed', newId: () => `${name}-${++ids}`, ...over };
    const d = driveWorld<DiscodoWorld, WorldEvent, WorldEffect, TimerKey>({
      clock,
      initial: initialWorld(),
      step: (state, ev) => {
        const r = step(state, ev, cfg);
        route(name, r.effects as WorldEffect[]);
        return r;
      },
      timerId,
      timerEvent: (key, now) => ({ type: 'timer', now, key }),
    });
    insts.set(name, { name, d });
  }
  const at = (n: string): Inst => insts.get(n) as Inst;
  // Every instance knows every other.
  for (const a of names) for (const b of names) if (a !== b) at(a).d.feed({ type: 'peer', now: clock.now(), instance: b, up: true });
  const open = (n: string, conn: string): WorldEffect[] => at(n).d.feed({ type: 'open', now: clock.now(), conn });
  const frame = (n: string, conn: string, text: string): WorldEffect[] => at(n).d.feed({ type: 'frame', now: clock.now(), conn, data: Buffer.from(text), binary: false });
  const close = (n: string, conn: string): WorldEffect[] => at(n).d.feed({ type: 'closed', now: clock.now(), conn });
  /** Delivers the first message in flight that matches, or every one (in order). Returns the effects at the receivers. */
  const deliver = (match?: (m: { from: string; to: string; msg: ClusterMsg }) => boolean): WorldEffect[] => {
    const fx: WorldEffect[] = [];
    for (;;) {
      const i = wire.findIndex((w) => !match || match({ from: w.from, to: w.to, msg: (decodeClusterMsg(w.bytes) as { msg: ClusterMsg }).msg }));
      if (i < 0) return fx;
      const [w] = wire.splice(i, 1) as [{ from: string; to: string; bytes: Buffer }];
      const d = decodeClusterMsg(w.bytes);
      if (!d) throw new Error('not a world message');
      fx.push(...at(w.to).d.feed({ type: 'remote', now: clock.now(), from: d.from, msg: d.msg }));
      if (match) return fx;
    }
  };
  const sent = (fx: WorldEffect[], conn: string): string[] =>
    fx.flatMap((e) => (e.type === 'send' && e.conn === conn ? [(JSON.parse(e.frame) as { op: string }).op] : []));
  const frames = (fx: WorldEffect[], conn: string): unknown[] => fx.flatMap((e) => (e.type === 'send' && e.conn === conn ? [JSON.parse(e.frame)] : []));
  return { clock, at, open, frame, close, deliver, sent, frames, wire };
}

/** A session with one voice client (guild 1, channel 10) identified on `n` by socket `conn`. */
function withVoice(c: ReturnType<typeof cluster>, n: string, conn: string): void {
  c.open(n, conn);
  c.frame(n, conn, IDENTIFY);
  c.deliver();
  c.frame(n, conn, vstate('1', '10'));
  c.frame(n, conn, vserver('1'));
}

/** The bot's session lives on C with no socket; it IDENTIFYs on A and, 1 ms later, on B: two claims out. */
function twoClaims(): ReturnType<typeof cluster> {
  const c = cluster(['A', 'B', 'C']);
  withVoice(c, 'C', 'x');
  c.close('C', 'x');
  c.open('A', 'a');
  c.frame('A', 'a', IDENTIFY);
  c.clock.advance(1);
  c.open('B', 'b');
  c.frame('B', 'b', IDENTIFY);
  return c;
}

describe('discodo world across instances', () => {
  it('resumes on B a session detached on A: IDENTIFIED then RESUMED with its voice clients, once A has handed it over', () => {
    const c = cluster(['A', 'B']);
    withVoice(c, 'A', 'a');
    const vcId = [...(c.at('A').d.state().sessions.get(KEY)?.bot.voiceClients.values() ?? [])][0]?.id;
    c.close('A', 'a');
    c.clock.advance(100_000);
    c.open('B', 'b');
    const claimed = c.frame('B', 'b', IDENTIFY);
    // Nothing to the bot yet: the claim is out.
    expect(c.sent(claimed, 'b')).toEqual([]);
    expect(claimed).toContainEqual({ type: 'cluster', to: null, msg: { t: 'claim', id: 'B-1', key: KEY, at: c.clock.now() } });
    const atA = c.deliver((m) => m.to === 'A');
    expect(atA).toContainEqual({ type: 'timer', key: { kind: 'expire', session: KEY }, at: null });
    expect(atA).toContainEqual(expect.objectContaining({ type: 'voice', call: 'disconnect', reason: 'moved' }));
    expect(atA).toContainEqual({ type: 'handoff', direction: 'out' });
    expect(c.at('A').d.state().sessions.size).toBe(0);
    const atB = c.deliver();
    expect(c.frames(atB, 'b')).toEqual([
      { op: 'IDENTIFIED', d: {} },
      { op: 'RESUMED', d: { voice_clients: [[1, 10]] } },
    ]);
    expect(atB).toContainEqual({ type: 'resumed', kind: 'detached' });
    expect(atB).toContainEqual(expect.objectContaining({ type: 'voice', call: 'connect', moved: true, vc: expect.objectContaining({ id: vcId }) }));
    expect(c.at('B').d.state().sessions.get(KEY)).toMatchObject({ attached: 'b', detachedAt: null });
    // The voice client answers on B, with its id from A.
    expect(c.frames(c.frame('B', 'b', '{"op":"getState","d":{"guild_id":1}}'), 'b')).toEqual([expect.objectContaining({ op: 'getState', d: expect.objectContaining({ id: vcId }) })]);
    expect(c.at('B').d.timers.has('c:B-1')).toBe(false);
    expect(c.at('A').d.timers.size).toBe(0);
  });

  it('takes over from B a session live on A: A closes its socket 4005; its later close changes nothing', () => {
    const c = cluster(['A', 'B']);
    withVoice(c, 'A', 'a');
    c.open('B', 'b');
    c.frame('B', 'b', IDENTIFY);
    const atA = c.deliver((m) => m.to === 'A');
    expect(atA).toContainEqual({ type: 'close', conn: 'a', code: 4005, reason: 'session taken over by a newer connection' });
    expect(c.at('A').d.timers.has('s:a')).toBe(false);
    const atB = c.deliver();
    expect(c.sent(atB, 'b')).toEqual(['IDENTIFIED', 'RESUMED']);
    expect(atB).toContainEqual({ type: 'resumed', kind: 'takeover' });
    expect(c.close('A', 'a').filter((e) => e.type !== 'timer')).toEqual([]);
    expect(worldSummary(c.at('A').d.state())).toMatchObject({ sessions: 0, connections: 0 });
    expect(c.at('A').d.timers.size).toBe(0);
    expect(worldSummary(c.at('B').d.state())).toMatchObject({ liveSessions: 1, voiceClients: 1 });
  });

  it('plays the frames sent while the claim is out after RESUMED, in order', () => {
    const c = cluster(['A', 'B'], { compat: 'discodo-3' });
    withVoice(c, 'A', 'a');
    c.close('A', 'a');
    c.open('B', 'b');
    c.frame('B', 'b', IDENTIFY);
    // HEARTBEAT needs no session: answered at once.
    expect(c.sent(c.frame('B', 'b', '{"op":"HEARTBEAT","d":7}'), 'b')).toEqual(['HEARTBEAT_ACK']);
    expect(c.frame('B', 'b', '{"op":"getQueue","d":{"guild_id":1}}')).toEqual([]);
    expect(c.frame('B', 'b', '{"op":"GET_STATUS"}')).toEqual([]);
    expect(c.frame('B', 'b', '{"op":"VC_DESTROY","d":{"guild_id":1}}')).toEqual([]);
    const atB = c.deliver();
    expect(c.sent(atB, 'b')).toEqual(['IDENTIFIED', 'RESUMED', 'getQueue', 'VC_DESTROYED']);
    // STATUS (the dialect's to answer) comes between them, in order.
    expect(atB.filter((e) => e.type === 'send' || e.type === 'status').map((e) => (e.type === 'status' ? 'STATUS' : (JSON.parse((e as { frame: string }).frame) as { op: string }).op))).toEqual([
      'IDENTIFIED',
      'RESUMED',
      'getQueue',
      'STATUS',
      'VC_DESTROYED',
    ]);
    expect(c.frames(atB, 'b')[1]).toMatchObject({ d: { voice_clients: { '1': { channel: 10 } } } });
    expect(worldSummary(c.at('B').d.state())).toMatchObject({ sessions: 1, voiceClients: 0 });
  });

  it('makes a new session when no instance holds one: IDENTIFIED alone, once every instance said none', () => {
    const c = cluster(['A', 'B', 'C']);
    c.open('B', 'b');
    c.frame('B', 'b', IDENTIFY);
    expect(c.sent(c.deliver((m) => m.to === 'A'), 'b')).toEqual([]);
    expect(c.deliver((m) => m.to === 'B')).toEqual([]);
    c.deliver((m) => m.to === 'C');
    expect(c.sent(c.deliver(), 'b')).toEqual(['IDENTIFIED']);
    expect(c.at('B').d.state().sessions.get(KEY)).toMatchObject({ attached: 'b' });
  });

  it('goes on without an instance that does not answer (claimTimeout), and keeps what it hands over late', () => {
    const c = cluster(['A', 'B'], { claimTimeout: 500 });
    withVoice(c, 'A', 'a');
    c.close('A', 'a');
    c.open('B', 'b');
    c.frame('B', 'b', IDENTIFY);
    const timedOut = c.at('B').d.advance(500);
    expect(c.sent(timedOut, 'b')).toEqual(['IDENTIFIED']);
    expect(timedOut).toContainEqual(expect.objectContaining({ type: 'log', level: 'warn', data: { session: KEY, instances: ['A'] } }));
    // A answers now: the voice client joins the session on B quietly, for the backend.
    c.deliver((m) => m.to === 'A');
    const lateFx = c.deliver();
    expect(c.sent(lateFx, 'b')).toEqual([]);
    expect(lateFx).toContainEqual(expect.objectContaining({ type: 'voice', call: 'connect', moved: true }));
    expect(worldSummary(c.at('B').d.state())).toMatchObject({ sessions: 1, voiceClients: 1 });
    expect(worldSummary(c.at('A').d.state()).sessions).toBe(0);
  });

  it('settles at once when the instance it waits for is reported gone', () => {
    const c = cluster(['A', 'B']);
    c.open('B', 'b');
    c.frame('B', 'b', IDENTIFY);
    c.wire.length = 0;
    const fx = c.at('B').d.feed({ type: 'peer', now: c.clock.now(), instance: 'A', up: false });
    expect(c.sent(fx, 'b')).toEqual(['IDENTIFIED']);
    expect(c.at('B').d.timers.has('c:B-1')).toBe(false);
    // And with no instance left, the next IDENTIFY is answered at once, as on one instance.
    c.open('B', 'b2');
    expect(c.sent(c.frame('B', 'b2', '{"op":"IDENTIFY","d":{"user_id":5}}'), 'b2')).toEqual(['IDENTIFIED']);
  });

  it('keeps the session detached when the claiming socket closes before the claim settles', () => {
    const c = cluster(['A', 'B']);
    withVoice(c, 'A', 'a');
    c.close('A', 'a');
    c.open('B', 'b');
    c.frame('B', 'b', IDENTIFY);
    c.close('B', 'b');
    const fx = c.deliver();
    expect(fx).toContainEqual({ type: 'timer', key: { kind: 'expire', session: KEY }, at: c.clock.now() + 300_000 });
    expect(worldSummary(c.at('B').d.state())).toMatchObject({ detachedSessions: 1, voiceClients: 1 });
    // And a resume on A later fetches it back from B.
    c.open('A', 'a2');
    c.frame('A', 'a2', IDENTIFY);
    expect(c.sent(c.deliver(), 'a2')).toEqual(['IDENTIFIED', 'RESUMED']);
    expect(worldSummary(c.at('B').d.state()).sessions).toBe(0);
  });

  it('a second socket on the same instance while the claim is out takes the claim over (4005 for the first)', () => {
    const c = cluster(['A', 'B']);
    withVoice(c, 'A', 'a');
    c.open('B', 'b1');
    c.frame('B', 'b1', IDENTIFY);
    c.open('B', 'b2');
    const fx = c.frame('B', 'b2', IDENTIFY);
    expect(fx).toContainEqual(expect.objectContaining({ type: 'close', conn: 'b1', code: 4005 }));
    expect(fx.filter((e) => e.type === 'cluster')).toEqual([]);
    expect(c.sent(c.deliver(), 'b2')).toEqual(['IDENTIFIED', 'RESUMED']);
  });

  it('two claims at once (the bot on A and B, its session on C): the later claim wins everywhere, the session is never split', () => {
    const c = twoClaims();
    // C hears A's claim first and hands the session to A; B's claim (later) then overtakes A's.
    const all: WorldEffect[] = [];
    all.push(...c.deliver((m) => m.to === 'C' && m.msg.t === 'claim' && m.from === 'A'));
    all.push(...c.deliver());
    expect(all.filter((e) => e.type === 'close')).toEqual([{ type: 'close', conn: 'a', code: 4005, reason: 'session taken over by a newer connection' }]);
    expect(c.sent(all, 'b')).toEqual(['IDENTIFIED', 'RESUMED']);
    expect(c.sent(all, 'a')).toEqual([]);
    expect(worldSummary(c.at('B').d.state())).toMatchObject({ liveSessions: 1, voiceClients: 1 });
    for (const n of ['A', 'C']) expect(worldSummary(c.at(n).d.state())).toMatchObject({ sessions: 0 });
    for (const n of ['A', 'B', 'C']) expect(c.at(n).d.state().cluster.claims.size).toBe(0);
  });

  it('two claims at once, the other order: the earlier claimant holds the session when the later claim reaches it', () => {
    const c = twoClaims();
    // Everything reaches B last.
    const all: WorldEffect[] = [];
    all.push(...c.deliver((m) => m.to === 'C' && m.from === 'B'));
    all.push(...c.deliver((m) => m.to === 'C'));
    all.push(...c.deliver((m) => m.to === 'A'));
    all.push(...c.deliver());
    expect(all.filter((e) => e.type === 'close').map((e) => (e as { conn: string }).conn)).toEqual(['a']);
    expect(c.sent(all, 'b')).toEqual(['IDENTIFIED', 'RESUMED']);
    expect(worldSummary(c.at('B').d.state())).toMatchObject({ liveSessions: 1, voiceClients: 1 });
    for (const n of ['A', 'C']) expect(worldSummary(c.at(n).d.state())).toMatchObject({ sessions: 0 });
  });

  it('an overtaken claim wins after all when the instance that overtook it goes away', () => {
    const c = twoClaims();
    // A hears B's later claim (overtaken), and C's handoff; then B dies before answering A.
    c.deliver((m) => m.to === 'A' && m.from === 'B');
    c.deliver((m) => m.to === 'C' && m.from === 'A');
    c.deliver((m) => m.to === 'A' && m.from === 'C');
    const fx = c.at('A').d.feed({ type: 'peer', now: c.clock.now(), instance: 'B', up: false });
    expect(c.sent(fx, 'a')).toEqual(['IDENTIFIED', 'RESUMED']);
    expect(fx.filter((e) => e.type === 'close')).toEqual([]);
    expect(worldSummary(c.at('A').d.state())).toMatchObject({ liveSessions: 1, voiceClients: 1 });
  });

  it('shutdown ends claims out with their timers', () => {
    const c = cluster(['A', 'B']);
    c.open('B', 'b');
    c.frame('B', 'b', IDENTIFY);
    c.at('B').d.feed({ type: 'shutdown', now: c.clock.now() });
    expect(c.at('B').d.timers.has('c:B-1')).toBe(false);
    expect(c.at('B').d.state().cluster.claims.size).toBe(0);
  });
});

describe('discodo cluster wire', () => {
  it('carries a session with its ids in the form they arrived in, and drops what does not fit', () => {
    const c = cluster(['A', 'B']);
    c.open('A', 'a');
    c.frame('A', 'a', IDENTIFY);
    c.deliver();
    c.frame('A', 'a', '{"op":"DISCORD_EVENT","d":{"t":"VOICE_STATE_UPDATE","d":{"guild_id":"900000000000000001","channel_id":870000000000000999,"user_id":870000000000000123,"session_id":"s"}}}');
    c.frame('A', 'a', '{"op":"DISCORD_EVENT","d":{"t":"VOICE_SERVER_UPDATE","d":{"guild_id":"900000000000000001","token":"t","endpoint":null}}}');
    c.frame('A', 'a', vstate('2', '20'));
    const bot = c.at('A').d.state().sessions.get(KEY)?.bot;
    if (!bot) throw new Error('no session');
    const bytes = encodeClusterMsg('A', { t: 'handoff', id: 'x', key: KEY, attached: true, bot });
    const back = decodeClusterMsg(bytes);
    expect(back?.from).toBe('A');
    const msg = back?.msg as Extract<ClusterMsg, { t: 'handoff' }>;
    expect(encodeClusterMsg('A', msg).equals(bytes)).toBe(true);
    expect(msg.bot.voiceClients.get('900000000000000001')).toMatchObject({ guildId: '900000000000000001', server: { token: 't', endpoint: null } });
    expect(msg.bot.pending.size).toBe(1);
    // A session whose ids do not make its key, and malformed messages, are dropped.
    expect(decodeClusterMsg(encodeClusterMsg('A', { t: 'handoff', id: 'x', key: '5', attached: true, bot }))).toBeUndefined();
    expect(decodeClusterMsg(Buffer.from('{"f":"A","t":"claim","id":"x","key":1,"at":1}'))).toBeUndefined();
    expect(decodeClusterMsg(Buffer.from('{"f":"A","t":"handoff","id":"x","key":"5","attached":false,"bot":{"userId":{"n":"5x"},"shardId":null,"vcs":[],"pending":[]}}'))).toBeUndefined();
    expect(decodeClusterMsg(Buffer.from('not json'))).toBeUndefined();
    expect(decodeClusterMsg(Buffer.from('{"f":"A","t":"what","id":"x"}'))).toBeUndefined();
  });
});
