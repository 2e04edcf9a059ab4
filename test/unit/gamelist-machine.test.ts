import { describe, expect, it } from 'vitest';
import { initialState, step, tokenValid, type ConnState, type Effect, type GamelistEvent, type MachineConfig } from '../../src/dialects/gamelist/machine.js';

const cfg: MachineConfig = { regTokens: ['a', 'b'], maxFailedRegistrations: 3, secretEquals: (x, y) => x === y };
const info = { name: 'n', desc: 'd', port: 1, map: 'm', playlist: 'p', curPlayers: 0, maxPlayers: 8, gameState: 0 };

const frame = (text: string, binary = false): GamelistEvent => ({ type: 'frame', data: Buffer.from(text), binary });
const reg = (token: string, id = 1): GamelistEvent => frame(JSON.stringify({ metadata: { type: 1, id }, info, regToken: token }));

function run(events: GamelistEvent[], state: ConnState = initialState): { state: ConnState; effects: Effect[] } {
  const effects: Effect[] = [];
  for (const e of events) {
    const s = step(state, e, cfg);
    state = s.state;
    effects.push(...s.effects);
  }
  return { state, effects };
}

describe('gamelist machine: frames', () => {
  it('hands a registration with a valid token to the runtime', () => {
    const { state, effects } = run([reg('b', 7)]);
    expect(state).toEqual({ ...initialState, authenticated: true });
    expect(effects).toEqual([{ type: 'register', msg: { type: 1, id: '7', info, regToken: 'b' } }]);
  });

  it('answers an invalid token with error 1 and closes with 1008 at maxFailedRegistrations', () => {
    const two = run([reg('x', 1), reg('y', 2)]);
    expect(two.state.failures).toBe(2);
    expect(two.effects.filter((e) => e.type === 'send')).toEqual([
      { type: 'send', frame: '{"metadata":{"type":-1,"id":1},"success":false,"error":{"type":1,"msg":"Invalid registration token"}}' },
      { type: 'send', frame: '{"metadata":{"type":-1,"id":2},"success":false,"error":{"type":1,"msg":"Invalid registration token"}}' },
    ]);
    expect(two.effects.some((e) => e.type === 'close')).toBe(false);
    const third = run([reg('z', 3)], two.state);
    expect(third.state.phase).toBe('closed');
    expect(third.effects.map((e) => e.type)).toEqual(['registration-refused', 'send', 'close']);
    expect(third.effects.at(-1)).toMatchObject({ type: 'close', code: 1008 });
  });

  it('valid registrations do not reset the failure count', () => {
    const { state } = run([reg('x'), reg('a'), reg('y')]);
    expect(state.failures).toBe(2);
  });

  it('closes a binary frame with 1003, malformed JSON with 1007, bad metadata or schema with 1008', () => {
    expect(run([frame('{}', true)]).effects).toEqual([{ type: 'close', code: 1003, reason: expect.any(String) }]);
    expect(run([frame('{')]).effects).toEqual([{ type: 'close', code: 1007, reason: expect.stringContaining('malformed JSON') }]);
    expect(run([frame('{"metadata":{"type":9,"id":1}}')]).effects).toEqual([{ type: 'close', code: 1008, reason: expect.any(String) }]);
    expect(run([frame('{"metadata":{"type":-2,"id":1},"success":true,"extra":1}')]).effects).toEqual([
      { type: 'close', code: 1008, reason: expect.stringContaining('extra') },
    ]);
  });

  it('passes responses to the runtime', () => {
    expect(run([frame('{"metadata":{"type":-2,"id":42},"success":true}')]).effects).toEqual([
      { type: 'response', msg: { type: -2, id: '42', success: true } },
    ]);
  });

  it('does nothing once closed', () => {
    const closed = run([frame('{')]).state;
    expect(run([reg('a'), { type: 'ping-tick' }, { type: 'pong-deadline' }], closed).effects).toEqual([]);
  });
});

describe('gamelist machine: liveness', () => {
  it('pings on every tick and arms one pong deadline until a pong comes', () => {
    const a = run([{ type: 'ping-tick' }]);
    expect(a.effects).toEqual([{ type: 'ping' }, { type: 'arm-pong-deadline' }]);
    expect(a.state.awaitingPong).toBe(true);
    const b = run([{ type: 'ping-tick' }], a.state);
    expect(b.effects).toEqual([{ type: 'ping' }]);
    const c = run([{ type: 'pong' }], b.state);
    expect(c.effects).toEqual([{ type: 'cancel-pong-deadline' }]);
    expect(c.state.awaitingPong).toBe(false);
    expect(run([{ type: 'pong' }], c.state).effects).toEqual([]);
  });

  it('closes with 1001 when the pong deadline passes, and ignores a stale deadline', () => {
    const waiting = run([{ type: 'ping-tick' }]).state;
    expect(run([{ type: 'pong-deadline' }], waiting).effects).toEqual([{ type: 'close', code: 1001, reason: 'no pong within pongTimeout' }]);
    expect(run([{ type: 'pong-deadline' }]).effects).toEqual([]);
  });
});

describe('gamelist machine: tokenValid', () => {
  it('compares against every token', () => {
    const seen: string[] = [];
    const eq = (x: string, y: string): boolean => {
      seen.push(y);
      return x === y;
    };
    expect(tokenValid('a', ['a', 'b', 'c'], eq)).toBe(true);
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(tokenValid('z', ['a'], eq)).toBe(false);
  });
});
