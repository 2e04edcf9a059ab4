import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  decodeControlFrame,
  FATAL_DISCORD_CODES,
  decodeEnvelope,
  decodeMasterFrame,
  encodeControl,
  encodeMaster,
  Op,
  OPS,
  renderOpcodeTable,
  shardingCloseCodes,
} from '../../src/protocols/sharding/messages.js';
import { countIds, expand, formatRanges, outside, toRanges } from '../../src/protocols/sharding/ranges.js';

const ok = (text: string) => {
  const r = decodeControlFrame(text);
  if (!r.ok) throw new Error(r.detail);
  return r.frame;
};
const bad = (text: string) => {
  const r = decodeControlFrame(text);
  expect(r.ok, text).toBe(false);
  return r.ok ? '' : r.detail;
};

describe('sharding protocol: the opcode table', () => {
  it('has every opcode of the contract, 0 to 15, and the additive IDENTIFY_CANCEL (16), with its name and direction', () => {
    expect(OPS.map((s) => [s.op, s.name, s.direction])).toEqual([
      [0, 'INFO', 'C→M'],
      [1, 'FATAL', 'C→M'],
      [2, 'COMMAND', 'M→C'],
      [3, 'OFFLOAD', 'M→C'],
      [4, 'SHUTDOWN', 'M→C'],
      [5, 'INITIALISE', 'M→C'],
      [6, 'CONNECT', 'M→C'],
      [7, 'ERROR', 'both'],
      [8, 'ACK', 'M→C'],
      [9, 'HEARTBEAT', 'C→M'],
      [10, 'IDENTIFY', 'C→M'],
      [11, 'CONNECTING', 'C→M'],
      [12, 'CONNECTED', 'C→M'],
      [13, 'IDENTIFY_REQUEST', 'C→M'],
      [14, 'IDENTIFY_GRANT', 'M→C'],
      [15, 'IDENTIFIED', 'M→C'],
      [16, 'IDENTIFY_CANCEL', 'C→M'],
    ]);
    expect(Object.keys(Op)).toHaveLength(17);
  });

  it('declares the contract close codes', () => {
    for (const code of [1001, 4001, 4002, 4003, 4004, 4005, 4006]) expect(shardingCloseCodes).toHaveProperty(String(code));
  });

  it('renders the docs opcode table from the schemas, and the docs carry it verbatim', () => {
    const table = renderOpcodeTable();
    expect(table).toContain('| 10 | IDENTIFY | C→M | `{name: string, capacity?: number, shards?: [[first, last], …], session_id?: string, features?: [string, …]}` |');
    expect(table).toContain('| 6 | CONNECT | M→C | `{shardRange: [] \\| [first, last], shards: [[first, last], …], redundant: bool}` |');
    const doc = readFileSync(new URL('../../docs/dialects/sharding.md', import.meta.url), 'utf8');
    expect(doc).toContain(table);
  });
});

describe('sharding protocol: decoding CONTROL frames', () => {
  it('decodes every C→M opcode', () => {
    expect(ok('{"o":0,"d":{"shards":[{"id":0,"status":"ready","latency_ms":42,"guilds":10}],"load":0.5,"memory_mb":100}}').o).toBe(0);
    expect(ok('{"o":0,"d":null}')).toMatchObject({ o: 0, d: {} });
    expect(ok('{"o":1,"d":{"code":4004,"message":"Authentication failed"}}')).toMatchObject({ o: 1, d: { code: 4004 } });
    expect(ok('{"o":7,"d":{"code":1,"message":"x"}}').o).toBe(7);
    expect(ok('{"o":9,"d":{"seq":3}}')).toMatchObject({ o: 9, d: { seq: 3 }, raw: '{"seq":3}' });
    expect(ok('{"o":9,"d":null}')).toMatchObject({ o: 9, d: null, raw: 'null' });
    expect(ok('{"o":10,"d":{"name":"a","capacity":2,"shards":[[0,3]],"session_id":"s","features":["identify-queue"]}}')).toMatchObject({
      o: 10,
      d: { name: 'a', capacity: 2, shards: [[0, 3]], session_id: 's', features: ['identify-queue'] },
    });
    expect(ok('{"o":11,"d":null}').o).toBe(11);
    expect(ok('{"o":11,"d":{}}').o).toBe(11);
    expect(ok('{"o":12,"d":{"shards":[[0,7],[9,9]]}}')).toMatchObject({ o: 12, d: { shards: [[0, 7], [9, 9]] } });
    expect(ok('{"o":13,"d":{"shard_id":5}}')).toMatchObject({ o: 13, d: { shard_id: 5 } });
  });

  it('treats optional fields sent as null as absent', () => {
    expect(ok('{"o":10,"d":{"name":"a","session_id":null,"shards":null,"capacity":null}}')).toMatchObject({ o: 10, d: { name: 'a' } });
    const f = ok('{"o":10,"d":{"name":"a","session_id":null}}');
    expect(f.d).not.toHaveProperty('session_id');
  });

  it('keeps extra payload fields and ignores extra envelope fields', () => {
    expect(ok('{"o":9,"d":{"seq":1},"s":7}').o).toBe(9);
    expect(ok('{"o":10,"d":{"name":"a","version":"1.2"}}').o).toBe(10);
  });

  it('keeps integers beyond 2^53 digit for digit in HEARTBEAT and INFO text', () => {
    expect(ok('{"o":9,"d":{"seq":1,"nonce":870000000000000123}}')).toMatchObject({ raw: '{"seq":1,"nonce":870000000000000123}' });
    const info = ok('{"o":0,"d":{"guild":870000000000000123,"load":0.30000000000000004}}');
    expect(info.o === 0 && info.raw).toBe('{"guild":870000000000000123,"load":0.30000000000000004}');
  });

  const envelopeCases: Array<[string, string, RegExp]> = [
    ['malformed JSON', '{"o":9,', /malformed JSON/],
    ['not JSON at all', 'hello', /malformed JSON/],
    ['an array', '[9,null]', /JSON object/],
    ['a number', '9', /JSON object/],
    ['a string', '"x"', /JSON object/],
    ['null', 'null', /JSON object/],
    ['missing o', '{"d":null}', /"o"/],
    ['o as a string', '{"o":"9","d":null}', /"o"/],
    ['o fractional', '{"o":9.5,"d":null}', /"o"/],
    ['o null', '{"o":null,"d":null}', /"o"/],
    ['o beyond 2^53', '{"o":90000000000000000001,"d":null}', /"o"/],
    ['missing d', '{"o":9}', /"d"/],
    ['d an array', '{"o":9,"d":[]}', /"d"/],
    ['d a number', '{"o":9,"d":1}', /"d"/],
    ['d a string', '{"o":9,"d":"x"}', /"d"/],
    ['d true', '{"o":9,"d":true}', /"d"/],
    ['duplicate keys', '{"o":9,"o":10,"d":null}', /malformed JSON/],
    ['an unknown opcode', '{"o":17,"d":null}', /unknown opcode 17/],
    ['a negative opcode', '{"o":-1,"d":null}', /unknown opcode -1/],
  ];
  for (const [name, text, detail] of envelopeCases) {
    it(`refuses ${name}`, () => {
      expect(bad(text)).toMatch(detail);
    });
  }

  for (const spec of OPS.filter((s) => s.direction === 'M→C')) {
    it(`refuses ${spec.name} (${spec.op}) from a CONTROL as an unknown opcode`, () => {
      expect(bad(`{"o":${spec.op},"d":{}}`)).toMatch(`unknown opcode ${spec.op}`);
    });
  }

  const payloadCases: Array<[string, string]> = [
    ['IDENTIFY without d', '{"o":10,"d":null}'],
    ['IDENTIFY without a name', '{"o":10,"d":{}}'],
    ['IDENTIFY with an empty name', '{"o":10,"d":{"name":""}}'],
    ['IDENTIFY with a numeric name', '{"o":10,"d":{"name":5}}'],
    ['IDENTIFY with a name over 128 characters', `{"o":10,"d":{"name":"${'x'.repeat(129)}"}}`],
    ['IDENTIFY with capacity 0', '{"o":10,"d":{"name":"a","capacity":0}}'],
    ['IDENTIFY with a negative capacity', '{"o":10,"d":{"name":"a","capacity":-1}}'],
    ['IDENTIFY with a string capacity', '{"o":10,"d":{"name":"a","capacity":"2"}}'],
    ['IDENTIFY with shards not a list', '{"o":10,"d":{"name":"a","shards":"0-7"}}'],
    ['IDENTIFY with a range of one number', '{"o":10,"d":{"name":"a","shards":[[1]]}}'],
    ['IDENTIFY with a range of three numbers', '{"o":10,"d":{"name":"a","shards":[[1,2,3]]}}'],
    ['IDENTIFY with a negative shard', '{"o":10,"d":{"name":"a","shards":[[-1,2]]}}'],
    ['IDENTIFY with a fractional shard', '{"o":10,"d":{"name":"a","shards":[[0,1.5]]}}'],
    ['IDENTIFY with first > last', '{"o":10,"d":{"name":"a","shards":[[5,2]]}}'],
    ['IDENTIFY with a numeric session_id', '{"o":10,"d":{"name":"a","session_id":1}}'],
    ['IDENTIFY with features not strings', '{"o":10,"d":{"name":"a","features":[1]}}'],
    ['CONNECTED without shards', '{"o":12,"d":{}}'],
    ['CONNECTED with null d', '{"o":12,"d":null}'],
    ['CONNECTED with first > last', '{"o":12,"d":{"shards":[[3,1]]}}'],
    ['IDENTIFY_REQUEST without shard_id', '{"o":13,"d":{}}'],
    ['IDENTIFY_REQUEST with a negative shard_id', '{"o":13,"d":{"shard_id":-1}}'],
    ['IDENTIFY_REQUEST with a string shard_id', '{"o":13,"d":{"shard_id":"1"}}'],
    ['IDENTIFY_REQUEST with a shard_id beyond 2^53', '{"o":13,"d":{"shard_id":870000000000000123}}'],
    ['IDENTIFY_CANCEL without shard_id', '{"o":16,"d":{}}'],
    ['IDENTIFY_CANCEL with null d', '{"o":16,"d":null}'],
    ['FATAL without a code', '{"o":1,"d":{"message":"x"}}'],
    ['FATAL with null d', '{"o":1,"d":null}'],
    ['FATAL with a string code', '{"o":1,"d":{"code":"4004"}}'],
    ['ERROR without a code', '{"o":7,"d":{"message":"x"}}'],
    ['INFO with shards not a list', '{"o":0,"d":{"shards":5}}'],
    ['INFO with a shard without an id', '{"o":0,"d":{"shards":[{"status":"ready"}]}}'],
    ['INFO with a string load', '{"o":0,"d":{"load":"high"}}'],
  ];
  for (const [name, text] of payloadCases) {
    it(`refuses ${name}`, () => {
      const detail = bad(text);
      expect(detail.length).toBeGreaterThan(0);
    });
  }

  it('decodes IDENTIFY_CANCEL', () => {
    const r = decodeControlFrame(encodeControl.identifyCancel(3));
    expect(r.ok && r.frame).toMatchObject({ o: 16, d: { shard_id: 3 } });
  });

  it('names the field that is wrong', () => {
    expect(bad('{"o":10,"d":{"name":"a","capacity":"2"}}')).toMatch(/^IDENTIFY: \/capacity /);
    expect(bad('{"o":12,"d":{"shards":[[3,1]]}}')).toMatch(/first > last/);
  });
});

describe('sharding protocol: decoding MASTER frames (client side)', () => {
  it('decodes every M→C opcode the server sends', () => {
    const frames = [
      encodeMaster.command({ command: 'restart_shard', args: { shard_id: 1 } }),
      encodeMaster.offload({ shards: [[0, 3]], reason: 'failover', from: 'b' }),
      encodeMaster.shutdown({ reason: 'x' }),
      encodeMaster.shutdown({ reason: 'x', shards: [[1, 1]] }),
      encodeMaster.initialise({ token: 't', heartbeat_interval: 30000, shard_count: 16, max_concurrency: 1, session_id: 's' }),
      encodeMaster.initialise({ token: 't', heartbeat_interval: 30000, shard_count: 16, max_concurrency: 1, session_id: 's', heartbeat_grace: 15000, reconnect_window: 30000, fence_margin: 5000 }),
      encodeMaster.connect({ shardRange: [], shards: [], redundant: true }),
      encodeMaster.connect({ shardRange: [0, 7], shards: [[0, 7]], redundant: false }),
      encodeMaster.error(4009, 'x'),
      encodeMaster.ack('{"seq":1}'),
      encodeMaster.ack('null'),
      encodeMaster.grant(3),
      encodeMaster.identified({ resumed: false, shards: [], redundant: false }),
    ];
    for (const f of frames) {
      const r = decodeMasterFrame(f);
      expect(r.ok, f).toBe(true);
    }
  });

  it('refuses C→M opcodes and bad payloads', () => {
    expect(decodeMasterFrame('{"o":10,"d":{"name":"a"}}').ok).toBe(false);
    expect(decodeMasterFrame('{"o":3,"d":{"shards":[[0,1]],"reason":"because"}}').ok).toBe(false);
    expect(decodeMasterFrame('{"o":6,"d":{"shardRange":[1],"shards":[],"redundant":false}}').ok).toBe(false);
  });
});

describe('sharding protocol: encoding', () => {
  it('writes the envelope {"o", "d"}', () => {
    expect(JSON.parse(encodeMaster.grant(3))).toEqual({ o: 14, d: { shard_id: 3 } });
    expect(JSON.parse(encodeMaster.error(4009, 'no'))).toEqual({ o: 7, d: { code: 4009, message: 'no' } });
    expect(encodeMaster.ack('{"seq":870000000000000123}')).toBe('{"o":8,"d":{"seq":870000000000000123}}');
    expect(JSON.parse(encodeControl.connecting())).toEqual({ o: 11, d: null });
    expect(JSON.parse(encodeControl.heartbeat())).toEqual({ o: 9, d: null });
    expect(JSON.parse(encodeControl.heartbeat(4))).toEqual({ o: 9, d: { seq: 4 } });
    expect(JSON.parse(encodeControl.identifyRequest(2))).toEqual({ o: 13, d: { shard_id: 2 } });
    for (const f of [encodeControl.connecting(), encodeControl.connected([[0, 1]]), encodeControl.identify({ name: 'a' }), encodeControl.info({ load: 1 })]) {
      expect(decodeControlFrame(f).ok, f).toBe(true);
    }
  });

  it('exposes the envelope check alone', () => {
    expect(decodeEnvelope('{"o":1,"d":null}')).toEqual({ ok: true, frame: { o: 1, d: null } });
  });
});

describe('sharding ranges', () => {
  it('compresses ids into sorted, merged ranges', () => {
    expect(toRanges([])).toEqual([]);
    expect(toRanges([3, 1, 2, 2, 7, 9, 8])).toEqual([
      [1, 3],
      [7, 9],
    ]);
  });

  it('expands ranges below a limit, and reports what lies beyond', () => {
    expect(expand([[0, 2], [1, 4], [14, 20]], 16)).toEqual([0, 1, 2, 3, 4, 14, 15]);
    expect(expand([[0, 1e12]], 4)).toEqual([0, 1, 2, 3]);
    expect(outside([[0, 2], [14, 20], [30, 31]], 16)).toEqual([
      [16, 20],
      [30, 31],
    ]);
    expect(countIds([[0, 3], [2, 5], [10, 10]])).toBe(7);
    expect(formatRanges([[0, 7], [9, 9]])).toBe('0-7,9');
    expect(formatRanges([])).toBe('none');
  });
});

describe('FATAL codes', () => {
  it('are the Discord close codes the contract names as not to be retried: 4004 and 4010-4014', () => {
    expect([...FATAL_DISCORD_CODES]).toEqual([4004, 4010, 4011, 4012, 4013, 4014]);
  });
});
