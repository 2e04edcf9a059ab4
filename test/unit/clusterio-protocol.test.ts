import { describe, expect, it } from 'vitest';
import { decodeEnvelope, encodeFrame, idOf, numberNode, parseTree, stringifyTree } from '../../src/protocols/clusterio/codec.js';
import { convertFieldValue, getField, loadConfig, setField, type InstanceConfig } from '../../src/protocols/clusterio/config.js';
import {
  handshakeValidators,
  INBOUND,
  kindOf,
  PLUGIN_TYPE,
  requestValidators,
  responseTypeOf,
  responseValidators,
  SEED_CONTROL_ACCEPTS,
  SEED_SLAVE_ACCEPTS,
} from '../../src/protocols/clusterio/messages.js';

describe('clusterio codec: envelopes', () => {
  it('decodes {seq, type, data} and keeps big numbers exact in the tree', () => {
    const r = decodeEnvelope('{"seq":3,"type":"x_event","data":{"id":870000000000000123,"s":"a"}}');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.env.seq).toBe(3);
    expect(r.env.type).toBe('x_event');
    expect(stringifyTree(r.env.tree)).toBe('{"id":870000000000000123,"s":"a"}');
  });

  const bad: Array<[string, string, 'json' | 'malformed']> = [
    ['not JSON', '{', 'json'],
    ['duplicate keys', '{"seq":1,"seq":2,"type":"a","data":{}}', 'json'],
    ['an array', '[]', 'malformed'],
    ['a number', '5', 'malformed'],
    ['an extra key', '{"seq":1,"type":"a","data":{},"ts":1}', 'malformed'],
    ['a missing seq', '{"type":"a","data":{}}', 'malformed'],
    ['a fractional seq', '{"seq":1.5,"type":"a","data":{}}', 'malformed'],
    ['a string seq', '{"seq":"1","type":"a","data":{}}', 'malformed'],
    ['a numeric type', '{"seq":1,"type":5,"data":{}}', 'malformed'],
    ['array data', '{"seq":1,"type":"a","data":[]}', 'malformed'],
    ['null data', '{"seq":1,"type":"a","data":null}', 'malformed'],
    ['missing data', '{"seq":1,"type":"a"}', 'malformed'],
  ];
  for (const [name, text, problem] of bad) {
    it(`refuses ${name}`, () => {
      const r = decodeEnvelope(text);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.problem).toBe(problem);
    });
  }

  it('encodes frames by splicing the data text', () => {
    expect(encodeFrame(4, 'a_event', '{"n":870000000000000123}')).toBe('{"seq":4,"type":"a_event","data":{"n":870000000000000123}}');
  });

  it('canonicalizes integer ids', () => {
    expect(idOf(777)).toBe('777');
    expect(idOf(numberNode('777.0'))).toBe('777');
    expect(idOf(numberNode('7.77e2'))).toBe('777');
    expect(idOf(numberNode('870000000000000123'))).toBe('870000000000000123');
    expect(idOf(numberNode('8.70000000000000123e17'))).toBe('870000000000000123');
    expect(idOf(numberNode('-0'))).toBe('0');
    expect(idOf(numberNode('1.5'))).toBeUndefined();
    expect(idOf('777')).toBeUndefined();
    expect(idOf(null)).toBeUndefined();
  });
});

describe('clusterio messages: schemas', () => {
  it('hello and ready are exactly the seed\'s', () => {
    expect(handshakeValidators.hello.check({ version: '2.0.0' })).toBe(true);
    expect(handshakeValidators.hello.check({ version: '2.0.0', heartbeat_interval: 1 })).toBe(false);
    expect(handshakeValidators.ready.check({})).toBe(true);
    expect(handshakeValidators.ready.check({ session_token: 't', heartbeat_interval: 15 })).toBe(true);
    expect(handshakeValidators.ready.check({ session_token: 't' })).toBe(false);
  });

  it('register messages need a token; features is optional', () => {
    const base = { token: 't', agent: 'a', version: 'v' };
    expect(handshakeValidators.register_control.check(base)).toBe(true);
    expect(handshakeValidators.register_control.check({ ...base, features: ['session'] })).toBe(true);
    expect(handshakeValidators.register_control.check({ agent: 'a', version: 'v' })).toBe(false);
    expect(handshakeValidators.register_slave.check({ ...base, name: 'n', id: 1 })).toBe(true);
    expect(handshakeValidators.register_slave.check({ ...base, name: 'n', id: 1.5 })).toBe(false);
    expect(handshakeValidators.register_slave.check({ ...base, name: 'n', id: 1, extra: 1 })).toBe(false);
  });

  it('every request and response data is additionalProperties: false', () => {
    for (const [type, v] of Object.entries(requestValidators)) {
      expect(v.check({ instance_id: 1, slave_id: 1, field: 'f', value: 'v', command: 'c', instance_ids: [], serialized_config: { groups: [] }, zzz: 1 }), type).toBe(false);
    }
    for (const [type, v] of Object.entries(responseValidators)) {
      expect(v.check({ seq: 1, error: 'e' }), type).toBe(true);
      expect(v.check({ seq: 1, error: 'e', zzz: 1 }), type).toBe(false);
      expect(v.check({ error: 'e' }), type).toBe(false);
    }
  });

  it('update_instances_event takes serialized_config with an optional status', () => {
    const v = INBOUND.slave.get('update_instances_event');
    expect(v?.check({ instances: [{ serialized_config: { groups: [] } }] })).toBe(true);
    expect(v?.check({ instances: [{ serialized_config: { groups: [] }, status: 'running' }] })).toBe(true);
    expect(v?.check({ instances: [{ serialized_config: { groups: [] }, status: 5 }] })).toBe(false);
    expect(v?.check({ instances: [{ serialized_config: {} }] })).toBe(false);
  });

  it('knows which role sends what', () => {
    expect(INBOUND.control.has('list_slaves_request')).toBe(true);
    expect(INBOUND.slave.has('list_slaves_request')).toBe(false);
    expect(INBOUND.slave.has('start_instance_response')).toBe(true);
    expect(INBOUND.control.has('start_instance_response')).toBe(false);
    expect(INBOUND.control.has('update_instances_event')).toBe(false);
  });

  it('the seed clients accept what the trace lists, and nothing of sessions', () => {
    for (const t of ['heartbeat', 'continue', 'invalidate', 'resume']) {
      expect(SEED_SLAVE_ACCEPTS.has(t)).toBe(false);
      expect(SEED_CONTROL_ACCEPTS.has(t)).toBe(false);
    }
    expect(SEED_SLAVE_ACCEPTS.has('assign_instance_request')).toBe(true);
    expect(SEED_CONTROL_ACCEPTS.has('send_rcon_response')).toBe(true);
    expect(SEED_CONTROL_ACCEPTS.has('assign_instance_request')).toBe(false);
  });

  it('classifies types', () => {
    expect(kindOf('a_request')).toBe('request');
    expect(kindOf('a_response')).toBe('response');
    expect(kindOf('a_event')).toBe('event');
    expect(kindOf('hello')).toBeUndefined();
    expect(responseTypeOf('global_chat:x_request')).toBe('global_chat:x_response');
    expect(PLUGIN_TYPE.test('global_chat:chat_event')).toBe(true);
    expect(PLUGIN_TYPE.test('chat_event')).toBe(false);
    expect(PLUGIN_TYPE.test('a:b')).toBe(false);
  });
});

describe('clusterio config: serialized configs', () => {
  const load = (tree: string): InstanceConfig => {
    const r = loadConfig(parseTree(tree));
    if (!r.ok) throw new Error(r.error);
    return r.value;
  };

  it('loads a config, fills the known instance fields, and keeps unknown groups and fields', () => {
    const c = load('{"groups":[{"name":"instance","fields":{"id":5}},{"name":"p","fields":{"x":870000000000000123}}],"extra":1}');
    expect(stringifyTree(c)).toBe('{"groups":[{"name":"instance","fields":{"id":5,"name":"New Instance","assigned_slave":null}},{"name":"p","fields":{"x":870000000000000123}}],"extra":1}');
  });

  it('refuses a config without an integer instance.id, or with a bad assigned_slave', () => {
    expect(loadConfig(parseTree('{"groups":[]}')).ok).toBe(false);
    expect(loadConfig(parseTree('{"groups":[{"name":"instance","fields":{"id":1.5}}]}')).ok).toBe(false);
    expect(loadConfig(parseTree('{"groups":[{"name":"instance","fields":{"id":1,"assigned_slave":"x"}}]}')).ok).toBe(false);
    expect(loadConfig(parseTree('{"groups":[{"name":"instance","fields":{"id":1,"name":5}}]}')).ok).toBe(false);
    expect(loadConfig(parseTree('{"groups":[{"name":"instance","fields":5}]}')).ok).toBe(false);
  });

  it('sets a field in a group the config does not have yet', () => {
    const c = load('{"groups":[{"name":"instance","fields":{"id":5}}]}');
    setField(c, 'new.flag', true);
    expect(getField(c, 'new.flag')).toBe(true);
  });

  const ok: Array<[string, string, string]> = [
    ['factorio.game_port', '34197', '34197'],
    ['factorio.game_port', ' 42 ', '42'],
    ['factorio.game_port', '1e3', '1000'],
    ['factorio.game_port', '.5', '0.5'],
    ['factorio.game_port', '', 'null'],
    ['instance.assigned_slave', '', 'null'],
    ['instance.assigned_slave', '870000000000000123', '870000000000000123'],
    ['factorio.rcon_password', 'x', '"x"'],
    ['factorio.settings', '{"a":870000000000000123}', '{"a":870000000000000123}'],
    ['unknown.field', '123', '"123"'],
    ['instance.name', 'n', '"n"'],
  ];
  for (const [field, value, expected] of ok) {
    it(`converts ${field} = ${JSON.stringify(value)} to ${expected}`, () => {
      const r = convertFieldValue(field, value);
      expect(r.ok).toBe(true);
      if (r.ok) expect(stringifyTree(r.value)).toBe(expected);
    });
  }

  const errors: Array<[string, string]> = [
    ['factorio.game_port', 'abc'],
    ['factorio.game_port', '12abc'],
    ['factorio.game_port', 'Infinity'],
    ['instance.id', '1.5'],
    ['instance.id', ''],
    ['instance.name', ''],
    ['factorio.settings', '{'],
    ['factorio.settings', '"str"'],
    ['factorio.settings', 'null'],
  ];
  for (const [field, value] of errors) {
    it(`refuses ${field} = ${JSON.stringify(value)}`, () => {
      expect(convertFieldValue(field, value).ok).toBe(false);
    });
  }
});

describe('clusterio docs', () => {
  it('docs/dialects/clusterio.md names every message type and close code the schemas define', async () => {
    const fs = await import('node:fs');
    const { Requests, Events, Handshake, clusterioCloseCodes } = await import('../../src/protocols/clusterio/messages.js');
    const doc = fs.readFileSync(new URL('../../docs/dialects/clusterio.md', import.meta.url), 'utf8');
    const names = [
      ...Object.keys(Requests).map((n) => `${n}_request`),
      ...Object.keys(Events).map((n) => `${n}_event`),
      ...Object.keys(Handshake),
    ];
    for (const n of names) expect(doc, n).toContain(n);
    for (const code of Object.keys(clusterioCloseCodes)) expect(doc, code).toContain(`| ${code} |`);
  });
});
