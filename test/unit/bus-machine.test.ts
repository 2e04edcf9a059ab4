import { describe, expect, it } from 'vitest';
import { initialState, step, type ConnState, type MachineConfig } from '../../src/dialects/bus/machine.js';
import { decode, withSource } from '../../src/protocols/bus/messages.js';

const cfg: MachineConfig = { token: 'tok', maxMessageBytes: 100, heartbeatInterval: 1000, secretEquals: (a, b) => a === b };
const frame = (s: string, binary = false) => ({ type: 'frame' as const, data: Buffer.from(s), binary });
const identified: ConnState = { phase: 'identified' };

describe('bus machine (pure)', () => {
  it('identifies with the right token and registers', () => {
    const r = step(initialState, frame('{"op":1,"data":{"token":"tok","groups":["a"],"name":"n"}}'), cfg);
    expect(r.state.phase).toBe('identified');
    expect(r.effects).toEqual([{ type: 'register', data: { token: 'tok', groups: ['a'], name: 'n' } }]);
  });

  it('uses the header token when IDENTIFY has none, but an IDENTIFY token wins', () => {
    expect(step(initialState, { ...frame('{"op":1}'), headerToken: 'tok' }, cfg).state.phase).toBe('identified');
    expect(step(initialState, { ...frame('{"op":1,"data":{"token":"bad"}}'), headerToken: 'tok' }, cfg).effects).toEqual([
      { type: 'disconnect', reason: 'IDENTIFY_FAILED' },
    ]);
  });

  it('checks size before anything else, then binary, then JSON', () => {
    expect(step(initialState, frame('x'.repeat(101)), cfg).effects[0]).toMatchObject({ reason: 'MESSAGE_TOO_BIG' });
    expect(step(initialState, frame('{"op":3}', true), cfg).effects[0]).toMatchObject({ reason: 'BAD_MESSAGE' });
    expect(step(initialState, frame('{'), cfg).effects[0]).toMatchObject({ reason: 'BAD_MESSAGE' });
  });

  it('answers PING in both phases, and ignores PONG once identified', () => {
    expect(step(initialState, frame('{"op":3}'), cfg).effects).toEqual([{ type: 'send', frame: '{"op":4}' }]);
    expect(step(identified, frame('{"op":3}'), cfg).effects).toEqual([{ type: 'send', frame: '{"op":4}' }]);
    expect(step(identified, frame('{"op":4}'), cfg).effects).toEqual([]);
  });

  it('times out only while awaiting IDENTIFY', () => {
    expect(step(initialState, { type: 'identify-deadline' }, cfg).effects).toEqual([{ type: 'disconnect', reason: 'IDENTIFY_TIMEOUT' }]);
    expect(step(identified, { type: 'identify-deadline' }, cfg).effects).toEqual([]);
  });

  it('pings on each tick and times out after two silent intervals', () => {
    expect(step(identified, { type: 'heartbeat-tick', now: 1999, lastSeen: 0 }, cfg).effects).toEqual([{ type: 'send', frame: '{"op":3}' }]);
    expect(step(identified, { type: 'heartbeat-tick', now: 2000, lastSeen: 0 }, cfg).effects).toEqual([{ type: 'disconnect', reason: 'PING_TIMEOUT' }]);
  });

  it('does nothing once closed', () => {
    expect(step({ phase: 'closed' }, frame('{"op":3}'), cfg).effects).toEqual([]);
  });

  it('turns DISCONNECT into a goodbye and a second IDENTIFY into ALREADY_IDENTIFIED', () => {
    expect(step(identified, frame('{"op":2}'), cfg)).toEqual({ state: { phase: 'closed' }, effects: [{ type: 'goodbye' }] });
    expect(step(identified, frame('{"op":1,"data":{"token":"tok"}}'), cfg).effects[0]).toMatchObject({ reason: 'ALREADY_IDENTIFIED' });
  });
});

describe('bus codec', () => {
  it('normalizes expect_reply', () => {
    const er = (v: string) => {
      const r = decode(`{"op":0,"id":"x","expect_reply":${v}}`);
      return r.ok && r.msg.op === 0 ? r.msg.expectReply : 'error';
    };
    expect(er('true')).toBe(1);
    expect(er('3')).toBe(3);
    expect(er('"all"')).toBe('all');
    expect(er('false')).toBeUndefined();
    expect(er('0')).toBeUndefined();
    expect(er('-1')).toBe('error');
    expect(er('1.5')).toBe('error');
  });

  it('splices source into the raw frame without re-serializing', () => {
    expect(withSource('{"op":0,"data":{"n":870000000000000123}}', 's')).toBe('{"op":0,"data":{"n":870000000000000123},"source":"s"}');
    expect(withSource('{"op":0}\n', 's')).toBe('{"op":0,"source":"s"}');
    expect(withSource('{ }', 's')).toBe('{"source":"s"}');
    expect(JSON.parse(withSource('{"op":0,"source":"forged"}', 'real')).source).toBe('real');
  });
});
