import { describe, expect, it } from 'vitest';
import {
  decode,
  decodeDiscordEvent,
  decodeIdentify,
  encode,
  encodeFrame,
  guildIdOf,
  intervalSeconds,
  LosslessNumber,
  parseLossless,
  rawMember,
  readSnowflake,
  sessionKey,
  snowflakeKey,
  toSnowflake,
} from '../../src/protocols/discodo/messages.js';

describe('discodo protocol: decode', () => {
  it('reads op, d and the exact text of d', () => {
    const r = decode('{"op":"HEARTBEAT","d":870000000000000123}');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.env.op).toBe('HEARTBEAT');
    expect(r.env.rawD).toBe('870000000000000123');
    expect(r.env.d).toBeInstanceOf(LosslessNumber);
    expect((r.env.d as LosslessNumber).value).toBe('870000000000000123');
  });

  it('treats an absent d as null', () => {
    const r = decode('{"op":"GET_STATUS"}');
    expect(r).toEqual({ ok: true, env: { op: 'GET_STATUS', d: null, rawD: 'null' } });
  });

  it.each([
    ['{"op":', 'malformed JSON'],
    ['', 'malformed JSON'],
    ['{"op":"A"} trailing', 'malformed JSON'],
    ['[]', 'JSON object'],
    ['5', 'JSON object'],
    ['null', 'JSON object'],
    ['{"d":1}', '"op"'],
    ['{"op":7}', '"op"'],
    ['{"op":""}', '"op"'],
    ['{"op":null}', '"op"'],
  ])('refuses %j (%s)', (text, detail) => {
    const r = decode(text);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.detail).toContain(detail);
  });
});

describe('discodo protocol: rawMember', () => {
  it.each([
    ['{"op":"X","d":1}', '1'],
    ['{"d":{"a":"}]\\"","b":[1,[2]]},"op":"X"}', '{"a":"}]\\"","b":[1,[2]]}'],
    ['{ "op" : "X" , "d" : [ 1 , 2 ] }', '[ 1 , 2 ]'],
    ['{"op":"X","d":"a,b}"}', '"a,b}"'],
    ['{"op":"X","d":-1.5e+3}', '-1.5e+3'],
    ['{"op":"X","d":null}', 'null'],
    ['{"op":"X","\\u0064":true}', 'true'],
    ['{"op":"X","dd":1,"d":2}', '2'],
  ])('finds d in %s', (text, want) => {
    expect(rawMember(text, 'd')).toBe(want);
  });

  it('returns undefined when the member is absent or the text is not an object', () => {
    expect(rawMember('{"op":"X"}', 'd')).toBeUndefined();
    expect(rawMember('{}', 'd')).toBeUndefined();
    expect(rawMember('[1]', 'd')).toBeUndefined();
  });
});

describe('discodo protocol: snowflakes', () => {
  const num = (s: string): unknown => parseLossless(s);

  it('reads integer numbers of any size exactly, and non-empty strings', () => {
    expect(snowflakeKey(readSnowflake(num('870000000000000123')) as LosslessNumber)).toBe('870000000000000123');
    expect(snowflakeKey(readSnowflake(num('18446744073709551615')) as LosslessNumber)).toBe('18446744073709551615');
    expect(readSnowflake('870000000000000123')).toBe('870000000000000123');
    expect(readSnowflake(num('0'))).toBeInstanceOf(LosslessNumber);
  });

  it.each(['-1', '1.5', '1e18', '1.0', '-0'])('refuses the number %s as an id', (n) => {
    expect(readSnowflake(num(n))).toBeUndefined();
  });

  it('refuses other values as ids', () => {
    for (const v of ['', 'x'.repeat(65), null, undefined, true, {}, [], 5]) expect(readSnowflake(v)).toBeUndefined();
  });

  it('keys sessions by user_id, or user_id-shard_id', () => {
    expect(sessionKey(new LosslessNumber('870000000000000123'), null)).toBe('870000000000000123');
    expect(sessionKey(new LosslessNumber('870000000000000123'), new LosslessNumber('0'))).toBe('870000000000000123-0');
    expect(sessionKey('1234', '3')).toBe('1234-3');
    expect(sessionKey(new LosslessNumber('870000000000000123'), null)).not.toBe(sessionKey(new LosslessNumber('870000000000000100'), null));
  });

  it('converts ids given by a program: strings stay strings, bigints and safe integers become numbers', () => {
    expect(toSnowflake('870000000000000123')).toBe('870000000000000123');
    expect(encodeFrame('X', toSnowflake(870000000000000123n))).toBe('{"op":"X","d":870000000000000123}');
    expect(encodeFrame('X', toSnowflake(1234))).toBe('{"op":"X","d":1234}');
    expect(() => toSnowflake(Number('870000000000000123'))).toThrow(RangeError);
    expect(() => toSnowflake(-1)).toThrow(RangeError);
  });

  it('writes ids back in the form and digits they arrived in', () => {
    const g = parseLossless('870000000000000999');
    expect(encode.vcCreated(g as LosslessNumber, 'v')).toBe('{"op":"VC_CREATED","d":{"guild_id":870000000000000999,"id":"v"}}');
    expect(encode.vcCreated('870000000000000999', 'v')).toBe('{"op":"VC_CREATED","d":{"guild_id":"870000000000000999","id":"v"}}');
  });
});

describe('discodo protocol: typed payloads', () => {
  it('decodes IDENTIFY with shard_id null, absent or an integer', () => {
    const a = decodeIdentify(parseLossless('{"user_id":870000000000000123,"shard_id":null}'));
    expect(a.ok && snowflakeKey(a.value.userId)).toBe('870000000000000123');
    expect(a.ok && a.value.shardId).toBe(null);
    const b = decodeIdentify(parseLossless('{"user_id":"1"}'));
    expect(b.ok && b.value.shardId).toBe(null);
    const c = decodeIdentify(parseLossless('{"user_id":1,"shard_id":2}'));
    expect(c.ok && c.value.shardId && snowflakeKey(c.value.shardId)).toBe('2');
    const s = decodeIdentify(parseLossless('{"user_id":1,"shard_id":"2"}'));
    expect(s.ok && s.value.shardId).toBe('2');
  });

  it.each(['null', '"x"', '[]', '{}', '{"user_id":null}', '{"user_id":-1}', '{"user_id":1,"shard_id":"a"}', '{"user_id":1,"shard_id":1.5}'])(
    'refuses IDENTIFY d=%s',
    (d) => {
      expect(decodeIdentify(parseLossless(d)).ok).toBe(false);
    },
  );

  it('decodes DISCORD_EVENT {t, d} and refuses other shapes', () => {
    expect(decodeDiscordEvent(parseLossless('{"t":"READY","d":{}}'))).toEqual({ ok: true, value: { t: 'READY', d: {} } });
    expect(decodeDiscordEvent(parseLossless('{"d":{}}')).ok).toBe(false);
    expect(decodeDiscordEvent(parseLossless('"READY"')).ok).toBe(false);
  });

  it('reads a guild_id from an object d', () => {
    expect(guildIdOf(parseLossless('{"guild_id":"1"}'))).toBe('1');
    expect(guildIdOf(parseLossless('{"guild_id":true}'))).toBeUndefined();
    expect(guildIdOf(null)).toBeUndefined();
  });
});

describe('discodo protocol: encode', () => {
  it('HELLO carries heartbeat_interval in seconds as a JSON number', () => {
    expect(intervalSeconds(15_000)).toBe(15);
    expect(encode.hello(15_000, 'muster-1')).toBe('{"op":"HELLO","d":{"heartbeat_interval":15,"version":"muster-1"}}');
    expect(encode.hello(1_500, 'v')).toContain('"heartbeat_interval":1.5');
  });

  it('FORBIDDEN carries the reason as a string', () => {
    expect(encode.forbidden('Password mismatch.')).toBe('{"op":"FORBIDDEN","d":"Password mismatch."}');
  });

  it('HEARTBEAT_ACK echoes the raw d', () => {
    expect(encode.heartbeatAck('18446744073709551615')).toBe('{"op":"HEARTBEAT_ACK","d":18446744073709551615}');
    expect(encode.heartbeatAck('null')).toBe('{"op":"HEARTBEAT_ACK","d":null}');
  });

  it('tracebacks: <op> {traceback: {NAME: message}}, plus guild_id when given', () => {
    expect(encode.traceback('getState', 'NOT_IDENTIFIED', 'Identify first.')).toBe(
      '{"op":"getState","d":{"traceback":{"NOT_IDENTIFIED":"Identify first."}}}',
    );
    expect(encode.traceback('skip', 'NOT_SUPPORTED', 'no', new LosslessNumber('870000000000000123'))).toBe(
      '{"op":"skip","d":{"traceback":{"NOT_SUPPORTED":"no"},"guild_id":870000000000000123}}',
    );
  });

  it('RESUMED: the seed list form and the discodo-3 dict form, guilds in order', () => {
    const vcs = [
      { guildId: new LosslessNumber('111111111111111111'), id: 'a', channelId: new LosslessNumber('222222222222222222') },
      { guildId: '333', id: 'b', channelId: null },
    ];
    expect(encode.resumed(vcs, 'seed')).toBe('{"op":"RESUMED","d":{"voice_clients":[[111111111111111111,222222222222222222],["333",null]]}}');
    expect(encode.resumed(vcs, 'discodo-3')).toBe(
      '{"op":"RESUMED","d":{"voice_clients":{"111111111111111111":{"id":"a","channel":222222222222222222},"333":{"id":"b","channel":null}}}}',
    );
    expect(encode.resumed([], 'seed')).toBe('{"op":"RESUMED","d":{"voice_clients":[]}}');
    expect(encode.resumed([], 'discodo-3')).toBe('{"op":"RESUMED","d":{"voice_clients":{}}}');
  });

  it("getState's idle answer and getQueue's empty queue", () => {
    expect(encode.idleState('v', '1', new LosslessNumber('2'))).toBe(
      '{"op":"getState","d":{"id":"v","guild_id":"1","channel_id":2,"state":0,"current":null,"context":{},"options":{"autoplay":true,"volume":1.0,"crossfade":10.0,"filter":{}}}}',
    );
    expect(JSON.parse(encode.idleState('v', '1', null))).toMatchObject({ d: { channel_id: null } });
    expect(encode.emptyQueue('1')).toBe('{"op":"getQueue","d":{"guild_id":"1","entries":[]}}');
  });

  it('client frames: IDENTIFY and HEARTBEAT', () => {
    expect(encode.identify(new LosslessNumber('870000000000000123'), null)).toBe('{"op":"IDENTIFY","d":{"user_id":870000000000000123,"shard_id":null}}');
    expect(encode.heartbeat(5)).toBe('{"op":"HEARTBEAT","d":5}');
  });
});
