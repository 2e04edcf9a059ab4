import { describe, expect, it } from 'vitest';
import {
  canonicalInt64,
  decodeFromGameServer,
  decodeFromMaster,
  encodeJoin,
  encodeRegister,
  encodeRegistrationError,
  encodeResponse,
  Int64Counter,
  isInt64Text,
  type ServerInfo,
} from '../../src/protocols/gamelist/messages.js';

const info: ServerInfo = { name: 'n', desc: 'd', port: 1, map: 'm', playlist: 'p', curPlayers: 0, maxPlayers: 8, gameState: 0 };
const infoJson = JSON.stringify(info);

describe('gamelist protocol: decodeFromGameServer', () => {
  it('decodes a registration, keeping the id as its text', () => {
    const r = decodeFromGameServer(`{"metadata":{"type":1,"id":9223372036854775807},"info":${infoJson},"regToken":"t"}`);
    expect(r).toEqual({ ok: true, msg: { type: 1, id: '9223372036854775807', info, regToken: 't' } });
  });

  it('keeps the password when given', () => {
    const r = decodeFromGameServer(`{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info, password: 'pw' })},"regToken":"t"}`);
    expect(r.ok && r.msg.type === 1 && r.msg.info.password).toBe('pw');
  });

  it('accepts the range ends of UINT16 and INT32', () => {
    for (const i of [
      { ...info, port: 0 },
      { ...info, port: 65535 },
      { ...info, curPlayers: -(2 ** 31), maxPlayers: 2 ** 31 - 1, gameState: -1 },
    ]) {
      expect(decodeFromGameServer(`{"metadata":{"type":1,"id":1},"info":${JSON.stringify(i)},"regToken":"t"}`).ok).toBe(true);
    }
  });

  it('decodes responses (-1 and -2) with and without error', () => {
    expect(decodeFromGameServer('{"metadata":{"type":-2,"id":-9223372036854775808},"success":true}')).toEqual({
      ok: true,
      msg: { type: -2, id: '-9223372036854775808', success: true },
    });
    expect(decodeFromGameServer('{"success":false,"error":{"msg":"x","type":-5},"metadata":{"id":3,"type":-1}}')).toEqual({
      ok: true,
      msg: { type: -1, id: '3', success: false, error: { type: -5, msg: 'x' } },
    });
  });

  const cases: Array<[string, 1007 | 1008]> = [
    ['{', 1007],
    ['', 1007],
    ['{"a":1,"a":2}', 1007],
    ['[]', 1008],
    ['true', 1008],
    ['{"metadata":null}', 1008],
    ['{"metadata":{"type":1,"id":1,"extra":0}}', 1008],
    ['{"metadata":{"type":-3,"id":1}}', 1008],
    ['{"metadata":{"type":1.0,"id":1}}', 1008],
    ['{"metadata":{"type":-2,"id":1.0}}', 1008],
    ['{"metadata":{"type":-2,"id":-9223372036854775809}}', 1008],
    ['{"metadata":{"type":-2,"id":123456789012345678901234}}', 1008],
    ['{"metadata":{"type":2,"id":1},"sessionToken":"a","username":"b","clantag":"c","conv":1}', 1008],
    [`{"metadata":{"type":1,"id":1},"info":${infoJson}}`, 1008],
    [`{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info, port: 70000 })},"regToken":"t"}`, 1008],
    [`{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info, curPlayers: 2 ** 31 })},"regToken":"t"}`, 1008],
    [`{"metadata":{"type":1,"id":1},"info":${JSON.stringify({ ...info, map: null })},"regToken":"t"}`, 1008],
    [`{"metadata":{"type":1,"id":1},"info":[],"regToken":"t"}`, 1008],
    ['{"metadata":{"type":-2,"id":1},"success":1}', 1008],
    ['{"metadata":{"type":-2,"id":1},"success":false,"error":{"type":2147483648,"msg":"x"}}', 1008],
    ['{"metadata":{"type":-1,"id":1},"success":true,"server_id":"x"}', 1008],
  ];
  for (const [frame, code] of cases) {
    it(`refuses ${frame.slice(0, 70)} with ${code}`, () => {
      const r = decodeFromGameServer(frame);
      expect(r.ok).toBe(false);
      if (!r.ok) {
        expect(r.code).toBe(code);
        expect(r.detail.length).toBeGreaterThan(0);
      }
    });
  }
});

describe('gamelist protocol: decodeFromMaster', () => {
  it('decodes a join request and a registration response with server_id', () => {
    expect(decodeFromMaster('{"metadata":{"type":2,"id":18446744073709551},"sessionToken":"s","username":"u","clantag":"c","conv":4294967295}')).toEqual({
      ok: true,
      msg: { type: 2, id: '18446744073709551', sessionToken: 's', username: 'u', clantag: 'c', conv: 4294967295 },
    });
    expect(decodeFromMaster('{"metadata":{"type":-1,"id":1},"success":true,"server_id":"abc"}')).toEqual({
      ok: true,
      msg: { type: -1, id: '1', success: true, serverId: 'abc' },
    });
  });

  it('refuses what a GS must not accept', () => {
    for (const [frame, code] of [
      ['nope', 1007],
      ['{"metadata":{"type":1,"id":1}}', 1008],
      ['{"metadata":{"type":2,"id":1},"sessionToken":"s","username":"u","clantag":"c","conv":-1}', 1008],
      ['{"metadata":{"type":2,"id":1},"sessionToken":"s","username":"u","conv":1}', 1008],
      ['{"metadata":{"type":-1,"id":1},"success":true,"server_id":5}', 1008],
    ] as const) {
      const r = decodeFromMaster(frame);
      expect(r.ok ? 0 : r.code, frame).toBe(code);
    }
  });
});

describe('gamelist protocol: encoding', () => {
  it('writes responses with the id spliced verbatim', () => {
    expect(encodeResponse(-1, '9223372036854775807', true, undefined, { server_id: 'x' })).toBe(
      '{"metadata":{"type":-1,"id":9223372036854775807},"success":true,"server_id":"x"}',
    );
    expect(encodeRegistrationError('-1', 2)).toBe('{"metadata":{"type":-1,"id":-1},"success":false,"error":{"type":2,"msg":"Server limit reached"}}');
    expect(encodeResponse(-2, '5', false, { type: 3, msg: 'no "way"' })).toBe('{"metadata":{"type":-2,"id":5},"success":false,"error":{"type":3,"msg":"no \\"way\\""}}');
  });

  it('refuses to splice something that is not an INT64', () => {
    expect(() => encodeResponse(-1, '1,"x":2', true)).toThrow(RangeError);
    expect(() => encodeResponse(-1, '9223372036854775808', true)).toThrow(RangeError);
  });

  it('writes join requests and registrations that decode back', () => {
    const j = encodeJoin('9007199254740993', { sessionToken: 's"', username: 'ü', clantag: '', conv: 4294967295 });
    expect(j).toBe('{"metadata":{"type":2,"id":9007199254740993},"sessionToken":"s\\"","username":"ü","clantag":"","conv":4294967295}');
    expect(decodeFromMaster(j).ok).toBe(true);
    const r = encodeRegister('-5', { ...info, password: 'pw' }, 'tok');
    expect(decodeFromGameServer(r)).toEqual({ ok: true, msg: { type: 1, id: '-5', info: { ...info, password: 'pw' }, regToken: 'tok' } });
  });
});

describe('gamelist protocol: INT64 helpers', () => {
  it('counts up as bigint and wraps after 2^63-1', () => {
    const c = new Int64Counter(2n ** 63n - 2n);
    expect([c.next(), c.next(), c.next()]).toEqual(['9223372036854775806', '9223372036854775807', '1']);
    expect(() => c.reset(2n ** 63n)).toThrow(RangeError);
  });

  it('recognizes INT64 texts and canonicalizes -0', () => {
    expect(isInt64Text('0')).toBe(true);
    expect(isInt64Text('-9223372036854775808')).toBe(true);
    expect(isInt64Text('01')).toBe(false);
    expect(isInt64Text('1e3')).toBe(false);
    expect(canonicalInt64('-0')).toBe('0');
    expect(canonicalInt64('9007199254740993')).toBe('9007199254740993');
  });
});
