import { describe, expect, it } from 'vitest';
import { initialState, step, type ConnState, type DiscodoEvent, type Effect, type MachineConfig } from '../../src/dialects/discodo/machine.js';
import { snowflakeKey } from '../../src/protocols/discodo/messages.js';

const cfg: MachineConfig = { heartbeatInterval: 15_000, handshakeTimeout: 60_000, version: 'muster-test' };

/** Drives the machine with frames (text) and deadlines, collecting effects. */
class Driver {
  state: ConnState;
  now = 1000;
  effects: Effect[] = [];

  constructor(forbidden?: string) {
    this.state = initialState(this.now);
    this.feed({ type: 'open', now: this.now, forbidden });
  }

  feed(e: DiscodoEvent): readonly Effect[] {
    const r = step(this.state, e, cfg);
    this.state = r.state;
    this.effects.push(...r.effects);
    return r.effects;
  }

  frame(text: string, binary = false): readonly Effect[] {
    return this.feed({ type: 'frame', now: this.now, data: Buffer.from(text), binary });
  }

  deadline(): readonly Effect[] {
    return this.feed({ type: 'deadline', now: this.now });
  }
}

const sent = (effects: readonly Effect[]): string[] => effects.flatMap((e) => (e.type === 'send' ? [e.frame] : []));

describe('discodo machine: open', () => {
  it('sends HELLO and arms the silence deadline', () => {
    const d = new Driver();
    expect(d.state.phase).toBe('open');
    expect(d.effects).toEqual([
      { type: 'send', frame: '{"op":"HELLO","d":{"heartbeat_interval":15,"version":"muster-test"}}' },
      { type: 'arm', ms: 60_000 },
    ]);
  });

  it('sends FORBIDDEN then closes 4003 when the password is wrong, and ignores later frames', () => {
    const d = new Driver('Password mismatch.');
    expect(d.effects).toEqual([
      { type: 'send', frame: '{"op":"FORBIDDEN","d":"Password mismatch."}' },
      { type: 'close', code: 4003, reason: 'forbidden' },
    ]);
    expect(d.state.phase).toBe('closed');
    expect(d.frame('{"op":"IDENTIFY","d":{"user_id":1}}')).toEqual([]);
  });
});

describe('discodo machine: silence', () => {
  it('closes with 4000 once handshakeTimeout has passed with no frame', () => {
    const d = new Driver();
    d.now += 60_000;
    expect(d.deadline()).toEqual([{ type: 'close', code: 4000, reason: expect.any(String) }]);
    expect(d.state.phase).toBe('closed');
  });

  it('re-arms for the rest of the window when a frame came in meanwhile', () => {
    const d = new Driver();
    d.now += 20_000;
    d.frame('{"op":"HEARTBEAT","d":1}');
    d.now += 40_000;
    expect(d.deadline()).toEqual([{ type: 'arm', ms: 20_000 }]);
    d.now += 20_000;
    expect(d.deadline()).toEqual([{ type: 'close', code: 4000, reason: expect.any(String) }]);
  });

  it('counts any frame, even a malformed-op traceback one, as activity', () => {
    const d = new Driver();
    d.now += 59_000;
    d.frame('{"op":"GET_STATUS"}');
    d.now += 1_000;
    expect(d.deadline()).toEqual([{ type: 'arm', ms: 59_000 }]);
  });
});

describe('discodo machine: frames', () => {
  it('echoes HEARTBEAT d verbatim in any phase', () => {
    const d = new Driver();
    expect(sent(d.frame('{"op":"HEARTBEAT","d":870000000000000123}'))).toEqual(['{"op":"HEARTBEAT_ACK","d":870000000000000123}']);
    d.frame('{"op":"IDENTIFY","d":{"user_id":1}}');
    expect(sent(d.frame('{"op":"HEARTBEAT","d":null}'))).toEqual(['{"op":"HEARTBEAT_ACK","d":null}']);
  });

  it('IDENTIFY → identify effect with exact ids; a second → ALREADY_IDENTIFIED', () => {
    const d = new Driver();
    const e = d.frame('{"op":"IDENTIFY","d":{"user_id":870000000000000123,"shard_id":4}}');
    expect(e).toHaveLength(1);
    const id = e[0];
    expect(id?.type).toBe('identify');
    if (id?.type === 'identify') {
      expect(snowflakeKey(id.data.userId)).toBe('870000000000000123');
      expect(id.data.shardId && snowflakeKey(id.data.shardId)).toBe('4');
    }
    expect(d.state.phase).toBe('identified');
    expect(sent(d.frame('{"op":"IDENTIFY","d":{"user_id":2}}'))).toEqual([
      '{"op":"IDENTIFY","d":{"traceback":{"ALREADY_IDENTIFIED":"This connection already identified."}}}',
    ]);
  });

  it('answers a bad IDENTIFY with BAD_REQUEST and stays open', () => {
    const d = new Driver();
    const out = sent(d.frame('{"op":"IDENTIFY","d":{"shard_id":null}}'));
    expect(JSON.parse(out[0] as string)).toEqual({ op: 'IDENTIFY', d: { traceback: { BAD_REQUEST: expect.any(String) } } });
    expect(d.state.phase).toBe('open');
  });

  it.each(['GET_STATUS', 'DISCORD_EVENT', 'VC_DESTROY', 'getState', 'skip', 'NOPE'])('%s before IDENTIFY → NOT_IDENTIFIED', (op) => {
    const d = new Driver();
    expect(sent(d.frame(`{"op":"${op}","d":{"guild_id":1}}`))).toEqual([`{"op":"${op}","d":{"traceback":{"NOT_IDENTIFIED":"Identify first."}}}`]);
  });

  it('routes identified ops to effects', () => {
    const d = new Driver();
    d.frame('{"op":"IDENTIFY","d":{"user_id":1}}');
    expect(d.frame('{"op":"GET_STATUS","d":null}')).toEqual([{ type: 'status' }]);
    expect(d.frame('{"op":"DISCORD_EVENT","d":{"t":"X","d":5}}')[0]).toMatchObject({ type: 'discord-event', event: { t: 'X' } });
    expect(d.frame('{"op":"VC_DESTROY","d":{"guild_id":"5"}}')).toEqual([{ type: 'vc-destroy', op: 'VC_DESTROY', guildId: '5' }]);
    expect(d.frame('{"op":"getState","d":{"guild_id":"5"}}')).toEqual([{ type: 'query', op: 'getState', guildId: '5' }]);
    expect(d.frame('{"op":"getQueue","d":{"guild_id":"5"}}')).toEqual([{ type: 'query', op: 'getQueue', guildId: '5' }]);
  });

  it('answers player ops with NOT_SUPPORTED and unknown ops with UNKNOWN_OP, guild_id echoed', () => {
    const d = new Driver();
    d.frame('{"op":"IDENTIFY","d":{"user_id":1}}');
    expect(JSON.parse(sent(d.frame('{"op":"seek","d":{"guild_id":"7","offset":3}}'))[0] as string)).toEqual({
      op: 'seek',
      d: { traceback: { NOT_SUPPORTED: expect.any(String) }, guild_id: '7' },
    });
    expect(JSON.parse(sent(d.frame('{"op":"dance","d":null}'))[0] as string)).toEqual({ op: 'dance', d: { traceback: { UNKNOWN_OP: expect.any(String) } } });
  });

  it.each(['{', 'null', '[]', '{"op":3}'])('closes %s with 4002', (text) => {
    const d = new Driver();
    expect(d.frame(text)).toEqual([{ type: 'close', code: 4002, reason: expect.any(String) }]);
    expect(d.state.phase).toBe('closed');
  });

  it('closes a binary frame with 4002', () => {
    const d = new Driver();
    expect(d.frame('{"op":"HEARTBEAT"}', true)).toEqual([{ type: 'close', code: 4002, reason: expect.any(String) }]);
  });
});
