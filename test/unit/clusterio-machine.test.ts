import { describe, expect, it } from 'vitest';
import { initialState, step, type LinkEffect, type LinkEvent, type LinkState } from '../../src/dialects/clusterio/machine.js';
import { mintToken, verifyToken } from '../../src/dialects/clusterio/token.js';

/** The link state machine, fed events with no socket and no clock. */

const cfg = { heartbeatInterval: 15_000 };

function run(events: LinkEvent[], from: LinkState = initialState): { state: LinkState; effects: LinkEffect[] } {
  let state = from;
  const effects: LinkEffect[] = [];
  for (const e of events) {
    const r = step(state, e, cfg);
    state = r.state;
    effects.push(...r.effects);
  }
  return { state, effects };
}

const frame = (f: unknown, now = 0): LinkEvent => ({ type: 'frame', text: typeof f === 'string' ? f : JSON.stringify(f), now });
const registerControl = (features?: string[]): LinkEvent =>
  frame({ seq: 1, type: 'register_control', data: { token: 't', agent: 'a', version: 'v', ...(features ? { features } : {}) } });

function ready(mode: 'seed' | 'session', role: 'slave' | 'control' = 'control'): LinkState {
  const { state } = run([
    role === 'control'
      ? registerControl(mode === 'session' ? ['session'] : undefined)
      : frame({ seq: 1, type: 'register_slave', data: { token: 't', agent: 'a', version: 'v', id: 1, name: 'n', ...(mode === 'session' ? { features: ['session'] } : {}) } }),
    { type: 'authorized', role, ready: '{}', now: 0 },
  ]);
  return state;
}

describe('clusterio machine: handshake', () => {
  it('a register becomes a register effect; authorization sends ready', () => {
    const { state, effects } = run([registerControl(), { type: 'authorized', role: 'control', ready: '{}', now: 5 }]);
    expect(state).toMatchObject({ phase: 'ready', mode: 'seed', role: 'control' });
    expect(effects[0]).toMatchObject({ type: 'register', session: false, msg: { role: 'control', token: 't' } });
    expect(effects[1]).toEqual({ type: 'send', frameType: 'ready', data: '{}' });
  });

  it('opting in sets session mode', () => {
    expect(run([registerControl(['session'])]).state).toMatchObject({ phase: 'authorizing', mode: 'session' });
  });

  it('keeps the slave id digits', () => {
    const { effects } = run([frame('{"seq":1,"type":"register_slave","data":{"token":"t","agent":"a","version":"v","id":870000000000000123,"name":"n"}}')]);
    expect(effects[0]).toMatchObject({ type: 'register', msg: { role: 'slave', id: '870000000000000123' } });
  });

  for (const [name, f] of [
    ['binary', undefined],
    ['bad JSON', '{'],
    ['an unknown type', '{"seq":1,"type":"x","data":{}}'],
    ['a bad register', '{"seq":1,"type":"register_control","data":{}}'],
  ] as const) {
    it(`${name} is an invalid handshake (1008)`, () => {
      const { state, effects } = run([{ type: 'frame', text: f, now: 0 }]);
      expect(state.phase).toBe('closed');
      expect(effects).toEqual([{ type: 'close', code: 1008, reason: 'Invalid handshake' }]);
    });
  }

  it('frames during authorization are deferred', () => {
    const { effects } = run([registerControl(), frame({ seq: 2, type: 'list_slaves_request', data: {} })]);
    expect(effects[1]).toMatchObject({ type: 'defer' });
  });

  it('a refused token closes with 4003', () => {
    expect(run([registerControl(), { type: 'refused' }]).effects.at(-1)).toEqual({ type: 'close', code: 4003, reason: 'Authentication failed' });
  });

  it('resume → resumed sends continue and a replay; invalidated goes back to the handshake', () => {
    const r1 = run([frame({ seq: 0, type: 'resume', data: { session_token: 's', last_seq: 3 } })]);
    expect(r1.effects).toEqual([{ type: 'resume', token: 's', lastSeq: 3 }]);
    const r2 = run([{ type: 'resumed', role: 'slave', lastReceived: 7, replayAfter: 3, now: 0 }], r1.state);
    expect(r2.effects).toEqual([
      { type: 'send', frameType: 'continue', data: '{"last_seq":7}' },
      { type: 'replay', after: 3 },
    ]);
    expect(r2.state).toMatchObject({ phase: 'ready', mode: 'session', lastReceived: 7 });
    const r3 = run([{ type: 'invalidated' }], r1.state);
    expect(r3.state.phase).toBe('handshake');
    expect(r3.effects).toEqual([{ type: 'send', frameType: 'invalidate', data: '{}' }]);
  });

  it('the handshake deadline closes with 1008', () => {
    expect(run([{ type: 'handshake-deadline' }]).effects).toEqual([{ type: 'close', code: 1008, reason: 'Handshake timeout' }]);
    expect(run([{ type: 'handshake-deadline' }], ready('seed')).effects).toEqual([]);
  });
});

describe('clusterio machine: after ready', () => {
  it('delivers a valid request', () => {
    const { effects } = run([frame({ seq: 2, type: 'list_slaves_request', data: {} })], ready('seed'));
    expect(effects[0]).toMatchObject({ type: 'deliver', kind: 'request', plugin: false });
  });

  it('delivers plugin messages with open data', () => {
    const { effects } = run([frame({ seq: 2, type: 'foo:bar_event', data: { any: [1] } })], ready('seed', 'slave'));
    expect(effects[0]).toMatchObject({ type: 'deliver', kind: 'event', plugin: true });
  });

  for (const [name, f] of [
    ['an unknown type', { seq: 2, type: 'bogus_event', data: {} }],
    ['bad data', { seq: 2, type: 'list_slaves_request', data: { x: 1 } }],
    ['a slave type from a control', { seq: 2, type: 'update_instances_event', data: { instances: [] } }],
    ['a heartbeat in seed mode', { seq: 2, type: 'heartbeat', data: { last_seq: 0 } }],
  ] as const) {
    it(`${name} closes with 4000 "Invalid message: …"`, () => {
      const { effects } = run([frame(f)], ready('seed'));
      expect(effects).toEqual([{ type: 'close', code: 4000, reason: expect.stringMatching(/^Invalid message: /) }]);
    });
  }

  it('a violation found by the runtime closes with 4000', () => {
    expect(run([{ type: 'violation', detail: 'x' }], ready('seed')).effects).toEqual([{ type: 'close', code: 4000, reason: 'Invalid message: x' }]);
  });

  it('close from the client is a hangup', () => {
    const { state, effects } = run([frame({ seq: 2, type: 'close', data: { reason: 'quit' } })], ready('seed'));
    expect(state.phase).toBe('closed');
    expect(effects).toEqual([{ type: 'hangup', reason: 'quit' }]);
  });

  it('session mode: counts seqs, drops duplicates, acks heartbeats', () => {
    const s0 = ready('session');
    const r1 = run([frame({ seq: 1, type: 'list_slaves_request', data: {} }), frame({ seq: 1, type: 'list_slaves_request', data: {} })], s0);
    expect(r1.effects.filter((e) => e.type === 'deliver')).toHaveLength(1);
    expect(r1.state.lastReceived).toBe(1);
    const r2 = run([frame({ seq: 0, type: 'heartbeat', data: { last_seq: 4 } }, 777)], r1.state);
    expect(r2.effects).toEqual([{ type: 'ack', lastSeq: 4 }]);
    expect(r2.state.lastHeartbeat).toBe(777);
    expect(run([frame({ seq: 0, type: 'list_slaves_request', data: {} })], s0).effects[0]).toMatchObject({ type: 'close', code: 4000 });
    expect(run([frame({ seq: 0, type: 'resume', data: { session_token: 'x', last_seq: 0 } })], s0).effects[0]).toMatchObject({ type: 'close', code: 4000 });
  });

  it('ticks: seed mode pings, and closes 3008 after 2 intervals without anything from the peer', () => {
    const s = ready('seed');
    expect(run([{ type: 'tick', now: 15_000, lastSeen: 0 }], s).effects).toEqual([{ type: 'ping' }]);
    expect(run([{ type: 'tick', now: 30_000, lastSeen: 0 }], s).effects).toEqual([{ type: 'close', code: 3008, reason: 'Ping timeout' }]);
    expect(run([{ type: 'tick', now: 30_000, lastSeen: 1 }], s).effects).toEqual([{ type: 'ping' }]);
  });

  it('ticks: session mode heartbeats, and only heartbeat frames count', () => {
    const s = { ...ready('session'), lastReceived: 3 };
    expect(run([{ type: 'tick', now: 15_000, lastSeen: 15_000 }], s).effects).toEqual([
      { type: 'ping' },
      { type: 'send', frameType: 'heartbeat', data: '{"last_seq":3}' },
    ]);
    expect(run([{ type: 'tick', now: 30_000, lastSeen: 29_000 }], s).effects).toEqual([{ type: 'close', code: 3008, reason: 'Heartbeat timeout' }]);
  });

  it('a closed link ignores everything', () => {
    const closed: LinkState = { ...initialState, phase: 'closed' };
    expect(run([frame({}), { type: 'tick', now: 1, lastSeen: 0 }, { type: 'refused' }], closed).effects).toEqual([]);
  });
});

describe('clusterio tokens', () => {
  const now = Date.now();
  it('mints and verifies slave and control tokens', async () => {
    const s = await mintToken('sec', { aud: 'slave', id: '42' });
    expect(await verifyToken('sec', s, { aud: 'slave', id: '42' }, now)).toBe(true);
    expect(await verifyToken('sec', s, { aud: 'slave', id: '43' }, now)).toBe(false);
    expect(await verifyToken('sec', s, { aud: 'control' }, now)).toBe(false);
    expect(await verifyToken('other', s, { aud: 'slave', id: '42' }, now)).toBe(false);
    const c = await mintToken('sec', { aud: 'control' });
    expect(await verifyToken('sec', c, { aud: 'control' }, now)).toBe(true);
    expect(JSON.parse(Buffer.from(s.split('.')[1] as string, 'base64url').toString())).toMatchObject({ aud: 'slave', id: 42 });
  });

  it('keeps slave ids beyond 2^53 exact', async () => {
    const t = await mintToken('sec', { aud: 'slave', id: '870000000000000123' });
    expect(Buffer.from(t.split('.')[1] as string, 'base64url').toString()).toContain('"id":870000000000000123');
    expect(await verifyToken('sec', t, { aud: 'slave', id: '870000000000000123' }, now)).toBe(true);
    expect(await verifyToken('sec', t, { aud: 'slave', id: '870000000000000124' }, now)).toBe(false);
  });

  it('refuses a non-integer slave id when minting', async () => {
    await expect(mintToken('sec', { aud: 'slave', id: 'abc' })).rejects.toThrow(TypeError);
  });

  it('honours exp against the injected clock', async () => {
    const { SignJWT } = await import('jose');
    const t = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setAudience('control').setExpirationTime(2_000_000_000).sign(new TextEncoder().encode('sec'));
    expect(await verifyToken('sec', t, { aud: 'control' }, 1_999_999_000_000)).toBe(true);
    expect(await verifyToken('sec', t, { aud: 'control' }, 2_000_000_001_000)).toBe(false);
  });
});
