import { TypeCompiler } from '@sinclair/typebox/compiler';
import { describe, expect, it } from 'vitest';
import { JsonNumber, ServerInfoSchema, Wire } from '../../src/protocols/gamelist/messages.js';

const info = { name: 'n', desc: 'd', port: 1, map: 'm', playlist: 'p', curPlayers: 0, maxPlayers: 8, gameState: 1 };

describe('gamelist schemas', () => {
  it('integer types are compiled custom kinds over JS numbers and JsonNumber texts', () => {
    const check = TypeCompiler.Compile(ServerInfoSchema);
    expect(check.Check(info)).toBe(true);
    expect(check.Check({ ...info, port: new JsonNumber('65535') })).toBe(true);
    for (const port of [65536, -1, new JsonNumber('5.0'), new JsonNumber('5e0'), '1', null]) expect(check.Check({ ...info, port }), String(port)).toBe(false);
    expect(check.Check({ ...info, curPlayers: new JsonNumber('2147483648') })).toBe(false);
    expect(check.Check({ ...info, password: null })).toBe(false);
    expect(check.Check({ ...info, extra: 1 })).toBe(false);
    const join = TypeCompiler.Compile(Wire.join);
    const meta = { type: 2, id: new JsonNumber('9223372036854775807') };
    expect(join.Check({ metadata: meta, sessionToken: 'a', username: 'b', clantag: 'c', conv: new JsonNumber('4294967295') })).toBe(true);
    expect(join.Check({ metadata: { ...meta, id: new JsonNumber('9223372036854775808') }, sessionToken: 'a', username: 'b', clantag: 'c', conv: 1 })).toBe(false);
  });

  it('the schemas serialize as JSON schemas', () => {
    expect(JSON.parse(JSON.stringify(ServerInfoSchema))).toMatchObject({
      type: 'object',
      additionalProperties: false,
      properties: { port: { type: 'integer', minimum: 0, maximum: 65535 } },
    });
  });
});
