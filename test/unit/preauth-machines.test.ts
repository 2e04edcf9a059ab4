import { describe, expect, it } from 'vitest';
import * as bus from '../../src/dialects/bus/machine.js';
import * as clusterio from '../../src/dialects/clusterio/machine.js';
import * as gamelist from '../../src/dialects/gamelist/machine.js';

/**
 * The pre-authentication frame cap, as each pure state machine applies it: a frame over
 * preAuthMaxBytes before the peer authenticated is closed with 1009 and a reason,
 * before any parsing; afterwards only the usual limits apply.
 */
const CAP = 1024;
/** `json` with the empty string value of `key` filled so that the text is `bytes` long (ASCII). */
const pad = (json: string, bytes: number, key = 'pad'): string => json.replace(`"${key}":""`, `"${key}":"${'x'.repeat(bytes - json.length)}"`);

describe('bus: frames before IDENTIFY', () => {
  const cfg: bus.MachineConfig = { token: 'tok', maxMessageBytes: 32 * 1024, preAuthMaxBytes: CAP, heartbeatInterval: 1000, secretEquals: (a, b) => a === b };
  const frame = (s: string): bus.BusEvent => ({ type: 'frame', data: Buffer.from(s), binary: false });

  it('are cut at preAuthMaxBytes with MESSAGE_TOO_BIG (1009 follows), even unparseable ones', () => {
    const over = 'x'.repeat(CAP + 1);
    expect(bus.step(bus.initialState, frame(over), cfg)).toEqual({
      state: { phase: 'closed' },
      effects: [{ type: 'disconnect', reason: 'MESSAGE_TOO_BIG', detail: `a frame before IDENTIFY may be at most ${CAP} bytes` }],
    });
  });

  it('of exactly preAuthMaxBytes still identify', () => {
    const text = pad('{"op":1,"data":{"token":"tok","pad":""}}', CAP);
    expect(Buffer.byteLength(text)).toBe(CAP);
    expect(bus.step(bus.initialState, frame(text), cfg).state.phase).toBe('identified');
  });

  it('are not capped once identified (maxMessageBytes applies)', () => {
    const text = pad('{"op":3,"pad":""}', 4 * CAP);
    expect(bus.step({ phase: 'identified' }, frame(text), cfg).effects).toEqual([{ type: 'send', frame: '{"op":4}' }]);
  });
});

describe('clusterio: frames before the handshake is accepted', () => {
  const cfg: clusterio.MachineConfig = { heartbeatInterval: 15_000, preAuthMaxBytes: CAP };
  const frame = (text: string): clusterio.LinkEvent => ({ type: 'frame', text, now: 0 });
  const register = (bytes: number): string => pad('{"seq":1,"type":"register_control","data":{"token":"t","agent":"","version":"v"}}', bytes, 'agent');

  it('are closed with 1009 and a reason when over preAuthMaxBytes (counted in UTF-8 bytes)', () => {
    const r = clusterio.step(clusterio.initialState, frame(register(CAP + 1)), cfg);
    expect(r.state.phase).toBe('closed');
    expect(r.effects).toEqual([{ type: 'close', code: 1009, reason: `Frame too big before the handshake (at most ${CAP} bytes)` }]);
    const multiByte = `{"seq":1,"type":"x","data":{"s":"${'é'.repeat(CAP / 2)}"}}`;
    expect(clusterio.step(clusterio.initialState, frame(multiByte), cfg).effects[0]).toMatchObject({ code: 1009 });
  });

  it('at preAuthMaxBytes go on to the handshake; while authorizing the cap still applies', () => {
    const r = clusterio.step(clusterio.initialState, frame(register(CAP)), cfg);
    expect(r.state.phase).toBe('authorizing');
    expect(clusterio.step(r.state, frame('x'.repeat(CAP + 1)), cfg).effects[0]).toMatchObject({ type: 'close', code: 1009 });
  });

  it('are not capped once ready', () => {
    const authorizing = clusterio.step(clusterio.initialState, frame(register(100)), cfg).state;
    const ready = clusterio.step(authorizing, { type: 'authorized', role: 'control', ready: '{}', now: 0 }, cfg).state;
    const big = pad('{"seq":2,"type":"list_slaves_request","data":{"pad":""}}', 4 * CAP);
    const r = clusterio.step(ready, frame(big), cfg);
    expect(r.effects.some((e) => e.type === 'close' && e.code === 1009)).toBe(false);
  });
});

describe('gamelist: frames before a valid regToken', () => {
  const cfg: gamelist.MachineConfig = { regTokens: ['good'], maxFailedRegistrations: 5, preAuthMaxBytes: CAP, secretEquals: (a, b) => a === b };
  const frame = (s: string): gamelist.GamelistEvent => ({ type: 'frame', data: Buffer.from(s), binary: false });
  const register = (token: string, bytes: number): string =>
    pad(`{"metadata":{"type":1,"id":1},"info":{"name":"n","desc":"","port":1,"map":"m","playlist":"p","curPlayers":0,"maxPlayers":8,"gameState":0},"regToken":"${token}"}`, bytes, 'desc');

  it('are closed with 1009 and a reason when over preAuthMaxBytes, before any parse', () => {
    const r = gamelist.step(gamelist.initialState, frame('{'.repeat(CAP + 1)), cfg);
    expect(r).toEqual({
      state: { ...gamelist.initialState, phase: 'closed' },
      effects: [{ type: 'close', code: 1009, reason: `a frame before a valid registration may be at most ${CAP} bytes` }],
    });
    expect(gamelist.step(gamelist.initialState, frame(register('good', CAP + 1)), cfg).effects).toEqual([
      { type: 'close', code: 1009, reason: `a frame before a valid registration may be at most ${CAP} bytes` },
    ]);
  });

  it('a valid registration lifts the cap; wrong tokens do not', () => {
    const wrong = gamelist.step(gamelist.initialState, frame(register('bad', 200)), cfg);
    expect(wrong.state.authenticated).toBeFalsy();
    const ok = gamelist.step(wrong.state, frame(register('good', CAP)), cfg);
    expect(ok.state.authenticated).toBe(true);
    expect(ok.effects[0]).toMatchObject({ type: 'register' });
    const refresh = gamelist.step(ok.state, frame(register('good', 4 * CAP)), cfg);
    expect(refresh.effects[0]).toMatchObject({ type: 'register' });
  });
});
