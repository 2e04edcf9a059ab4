import { describe, expect, it } from 'vitest';
import { BATCH_BYTES, Outbox, pack, packBatch, unpackBatch } from '../../src/cluster/redis-wire.js';

/** The Redis broker's batches (several messages in one PUBLISH), without a Redis. */

const unpack = (payload: Buffer): string[] => {
  const out: string[] = [];
  unpackBatch(payload, (m) => out.push(m.toString('latin1')));
  return out;
};

describe('redis-wire batches', () => {
  it('sends a message alone as it is, and reads it back as one', () => {
    const m = pack({ o: 'one', s: 'bus', c: 'x' }, 'hello');
    expect(packBatch([m], m.length)).toBe(m);
    expect(unpack(m)).toEqual(['{"o":"one","s":"bus","c":"x"}\nhello']);
  });

  it('frames several messages by length, bytes as they were, and reads them back in order', () => {
    const ms = [pack({ o: 'one' }, 'a'), pack({ o: 'one', b: 1 }, Buffer.from([0x24, 0x0a, 0x00, 0xff])), pack({ o: 'one' }, ''), Buffer.alloc(0)];
    const bytes = ms.reduce((n, m) => n + m.length, 0);
    const batch = packBatch(ms, bytes);
    expect(batch.subarray(0, 12).toString()).toBe(`$${ms[0]?.length}\n{"o":"on`);
    expect(unpack(batch)).toEqual(ms.map((m) => m.toString('latin1')));
  });

  it('stops at the first entry that does not parse, keeping the ones before it', () => {
    const ok = packBatch([Buffer.from('{"o":"a"}\nx'), Buffer.from('{"o":"a"}\ny')], 22);
    expect(unpack(Buffer.concat([ok, Buffer.from('$9\nshort')]))).toEqual(['{"o":"a"}\nx', '{"o":"a"}\ny']);
    expect(unpack(Buffer.concat([ok, Buffer.from('$x\n')]))).toHaveLength(2);
    expect(unpack(Buffer.concat([ok, Buffer.from('$\n')]))).toHaveLength(2);
    expect(unpack(Buffer.from('$1'))).toEqual([]);
  });

  it('publishes once a turn, each run of one channel as one batch, in the order added', async () => {
    const sent: Array<[string, string[]]> = [];
    const box = new Outbox((channel, payload, n) => {
      const ms = n > 1 ? unpack(payload) : [payload.toString('latin1')];
      expect(ms).toHaveLength(n);
      sent.push([channel, ms]);
    });
    const m = (s: string): Buffer => Buffer.from(`{"o":"a"}\n${s}`);
    box.add('x', m('1'));
    box.add('x', m('2'));
    box.add('y', m('3'));
    box.add('x', m('4'));
    const big = Buffer.alloc(BATCH_BYTES - 10, 0x7b);
    box.add('x', big);
    expect(sent).toEqual([]);
    await box.whenFlushed();
    expect(sent.map(([c, ms]) => [c, ms.length])).toEqual([
      ['x', 2],
      ['y', 1],
      ['x', 1],
      ['x', 1],
    ]);
    expect(sent[0]?.[1]).toEqual(['{"o":"a"}\n1', '{"o":"a"}\n2']);
    expect(sent[3]?.[1][0]).toHaveLength(big.length);
    await box.whenFlushed();
    expect(sent).toHaveLength(4);
  });
});
