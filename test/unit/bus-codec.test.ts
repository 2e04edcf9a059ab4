import { describe, expect, it } from 'vitest';
import { decode, Frames } from '../../src/protocols/bus/messages.js';
import { TypeCompiler } from '@sinclair/typebox/compiler';

const detail = (o: unknown): string => {
  const r = decode(typeof o === 'string' ? o : JSON.stringify(o));
  if (r.ok) throw new Error(`decoded: ${JSON.stringify(r.msg)}`);
  return r.detail;
};
const msg = (o: unknown) => {
  const r = decode(JSON.stringify(o));
  if (!r.ok) throw new Error(r.detail);
  return r.msg;
};

describe('bus codec: one decode, schemas decide, the contract words the refusal', () => {
  it('decodes each op into its typed message, raw kept for relaying', () => {
    const direct = { op: 0, id: 'r1', event: 'e', intent: { target: 'DIRECT', identifier: 'svc' }, expect_reply: true, data: { n: 1 } };
    expect(msg(direct)).toEqual({ op: 0, id: 'r1', event: 'e', intent: { target: 'DIRECT', identifier: 'svc' }, expectReply: 1, data: { n: 1 }, raw: JSON.stringify(direct) });
    expect(msg({ op: 0 })).toMatchObject({ op: 0, intent: { target: 'GLOBAL' } });
    expect(msg({ op: 0, intent: null, expect_reply: 0 }).expectReply).toBeUndefined();
    expect(msg({ op: 0, id: 'x', intent: { target: 'GROUP', identifier: 'g', self: true }, expect_reply: 'all' })).toMatchObject({ intent: { target: 'GROUP', identifier: 'g', self: true }, expectReply: 'all' });
    expect(msg({ op: 1, data: { token: 't', group: 'g', groups: ['a', 'b'], name: null } })).toMatchObject({ op: 1, data: { token: 't', group: 'g', groups: ['a', 'b'] } });
    expect(msg({ op: 1 })).toMatchObject({ op: 1, data: {} });
    expect(msg({ op: 2, data: { reason: 'bye' } })).toMatchObject({ op: 2, data: { reason: 'bye' } });
    expect(msg({ op: 3 }).op).toBe(3);
    expect(msg({ op: 4 }).op).toBe(4);
    expect(msg({ op: 5, id: 'r1', intent: { target: 'DIRECT', identifier: 'req' }, data: 1 })).toMatchObject({ op: 5, id: 'r1', to: 'req', data: 1 });
    expect(msg({ op: 5, id: 'r1', intent: 'anything' }).to).toBeUndefined();
  });

  it('refuses with the same details as always, in the same order', () => {
    expect(detail('{')).toMatch(/^malformed JSON: /);
    expect(detail('[]')).toBe('a frame must be a JSON object');
    expect(detail({ op: 'x' })).toBe('"op" must be an integer');
    expect(detail({ op: 1.5 })).toBe('"op" must be an integer');
    expect(detail({ op: 9 })).toBe('unknown op 9');
    expect(detail({ op: 9, id: 3 })).toBe('"id" must be a string');
    expect(detail({ op: 3, event: 3 })).toBe('"event" must be a string');
    expect(detail({ op: 0, intent: 'x' })).toBe('"intent" must be an object');
    expect(detail({ op: 0, intent: { target: 'ALL' } })).toBe('"intent.target" must be GLOBAL, GROUP or DIRECT');
    expect(detail({ op: 0, intent: { target: 'GLOBAL', identifier: 5 } })).toBe('"intent.identifier" must be a string');
    expect(detail({ op: 0, intent: { target: 'DIRECT', identifier: '' } })).toBe('"intent.identifier" is required for DIRECT');
    expect(detail({ op: 0, intent: { target: 'GROUP' } })).toBe('"intent.identifier" is required for GROUP');
    expect(detail({ op: 0, intent: { target: 'GLOBAL', self: 'y' } })).toBe('"intent.self" must be a boolean');
    expect(detail({ op: 0, id: 'r', expect_reply: -1 })).toBe('"expect_reply" must be a positive integer, true, or "all"');
    expect(detail({ op: 0, expect_reply: true })).toBe('"expect_reply" needs an "id"');
    expect(detail({ op: 1, data: [] })).toBe('IDENTIFY "data" must be an object');
    expect(detail({ op: 1, data: { token: 1 } })).toBe('"data.token" must be a string');
    expect(detail({ op: 1, data: { group: '' } })).toBe('"data.group" must be a non-empty string');
    expect(detail({ op: 1, data: { groups: ['a', ''] } })).toBe('"data.groups" must be an array of non-empty strings');
    expect(detail({ op: 1, data: { groups: ['a'], name: '' } })).toBe('"data.name" must be a non-empty string');
    expect(detail({ op: 5 })).toBe('REPLY needs an "id"');
    expect(detail({ op: 5, id: null })).toBe('REPLY needs an "id"');
  });

  it('the schemas are plain JSON schemas that compile', () => {
    for (const schema of Object.values(Frames)) expect(() => TypeCompiler.Compile(schema)).not.toThrow();
    expect(JSON.parse(JSON.stringify(Frames.REPLY))).toMatchObject({ type: 'object', required: ['op', 'id'] });
  });
});
