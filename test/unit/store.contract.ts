/**
 * The behaviour every Store must have. Each implementation's test file calls
 * storeContract(name, make); `make` receives the clock the store must use for TTLs,
 * which the suite moves by hand (no sleeping).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JsonValue, Store } from '../../src/store/types.js';

const START = 1_700_000_000_000;

const ROUND_TRIPS: Array<[string, JsonValue]> = [
  ['null', null],
  ['true', true],
  ['false', false],
  ['zero', 0],
  ['a negative integer', -42],
  ['a fraction', 3.141592653589793],
  ['a tiny number', -1.5e-300],
  ['a huge number', 1.7976931348623157e308],
  ['the largest safe integer', Number.MAX_SAFE_INTEGER],
  ['the empty string', ''],
  ['a plain string', 'hello'],
  ['unicode text', 'héllo wörld, 日本語, emoji 🚀👩‍👩‍👧, rtl עברית'],
  ['control characters and quotes', 'line\nbreak\ttab "quoted" \\ back\u0000nul'],
  ['a lone surrogate', 'broken \ud800 pair'],
  ['an empty array', []],
  ['an empty object', {}],
  ['a mixed array', [1, 'two', null, true, { three: 3 }, [4, [5]]]],
  [
    'a nested object',
    {
      name: 'shard-7',
      owners: [{ id: 1, tags: ['a', 'b'] }, { id: 2, tags: [] }],
      halted: false,
      meta: { deep: { deeper: { deepest: [null, 0, ''] } } },
      'key with spaces': 'ok',
      ключ: 'значение',
    },
  ],
  ['an object with a __proto__ key', JSON.parse('{"__proto__": {"polluted": true}, "x": 1}') as JsonValue],
];

export function storeContract(name: string, make: (now: () => number) => Promise<Store> | Store): void {
  describe(`Store contract: ${name}`, () => {
    let t = START;
    const now = (): number => t;
    let store: Store;

    beforeEach(async () => {
      t = START;
      store = await make(now);
    });

    afterEach(async () => {
      await store.close();
    });

    describe('get / set / delete', () => {
      it.each(ROUND_TRIPS)('round-trips %s', async (_label, value) => {
        await store.set('ns', 'k', value);
        expect(await store.get('ns', 'k')).toStrictEqual(value);
        expect(await store.list('ns')).toStrictEqual([['k', value]]);
      });

      it('returns undefined for a missing key', async () => {
        expect(await store.get('ns', 'missing')).toBeUndefined();
      });

      it('overwrites an existing value', async () => {
        await store.set('ns', 'k', { v: 1 });
        await store.set('ns', 'k', 'replaced');
        expect(await store.get('ns', 'k')).toBe('replaced');
      });

      it('keeps a stored null distinct from an absent key', async () => {
        await store.set('ns', 'k', null);
        expect(await store.get('ns', 'k')).toBeNull();
        expect(await store.delete('ns', 'k')).toBe(true);
        expect(await store.get('ns', 'k')).toBeUndefined();
      });

      it('delete reports whether the key existed', async () => {
        expect(await store.delete('ns', 'k')).toBe(false);
        await store.set('ns', 'k', 1);
        expect(await store.delete('ns', 'k')).toBe(true);
        expect(await store.delete('ns', 'k')).toBe(false);
        expect(await store.get('ns', 'k')).toBeUndefined();
      });

      it('accepts unusual keys and namespaces', async () => {
        const keys = ['', ' ', 'a/b:c', 'ключ', '🚀', "quote'\"", 'x'.repeat(1000)];
        for (const k of keys) await store.set('clusterio:slaves', k, k);
        for (const k of keys) expect(await store.get('clusterio:slaves', k)).toBe(k);
        expect(await store.list('clusterio:slaves')).toHaveLength(keys.length);
      });

      it('rejects values JSON cannot represent, storing nothing', async () => {
        const cyclic: Record<string, unknown> = {};
        cyclic.self = cyclic;
        const bad: unknown[] = [
          Number.NaN,
          Number.POSITIVE_INFINITY,
          undefined,
          { a: undefined },
          [1, undefined],
          { when: new Date(0) },
          new Map(),
          10n,
          () => 1,
          cyclic,
        ];
        for (const value of bad) {
          await expect(store.set('ns', 'k', value as JsonValue)).rejects.toThrow(TypeError);
          await expect(store.compareAndSet('ns', 'k', undefined, value as JsonValue)).rejects.toThrow(TypeError);
        }
        expect(await store.get('ns', 'k')).toBeUndefined();
      });

      it('allows the same object to appear twice (not a cycle)', async () => {
        const shared = { s: 1 };
        await store.set('ns', 'k', { a: shared, b: shared, c: [shared, shared] });
        expect(await store.get('ns', 'k')).toStrictEqual({ a: { s: 1 }, b: { s: 1 }, c: [{ s: 1 }, { s: 1 }] });
      });
    });

    describe('namespaces', () => {
      it('keeps the same key in different namespaces apart', async () => {
        await store.set('sharding', 'k', 'a');
        await store.set('clusterio:slaves', 'k', 'b');
        expect(await store.get('sharding', 'k')).toBe('a');
        expect(await store.get('clusterio:slaves', 'k')).toBe('b');

        expect(await store.delete('sharding', 'k')).toBe(true);
        expect(await store.get('sharding', 'k')).toBeUndefined();
        expect(await store.get('clusterio:slaves', 'k')).toBe('b');
      });

      it('does not treat namespaces as prefixes of each other', async () => {
        await store.set('a', 'bc', 1);
        await store.set('ab', 'c', 2);
        expect(await store.list('a')).toStrictEqual([['bc', 1]]);
        expect(await store.list('ab')).toStrictEqual([['c', 2]]);
        expect(await store.get('a', 'bc')).toBe(1);
        expect(await store.get('ab', 'bc')).toBeUndefined();
      });

      it('keeps counters per namespace', async () => {
        await store.incr('x', 'n', 5);
        await store.incr('y', 'n', 7);
        expect(await store.get('x', 'n')).toBe(5);
        expect(await store.get('y', 'n')).toBe(7);
      });
    });

    describe('list', () => {
      it('is empty for an unknown namespace', async () => {
        expect(await store.list('nothing-here')).toStrictEqual([]);
      });

      it('returns the namespace only, sorted by key', async () => {
        for (const k of ['delta', 'alpha', 'charlie', 'bravo', 'Zulu', '10', '9']) await store.set('ns', k, k.length);
        await store.set('other', 'aaa', 'not mine');
        await store.set('ns2', 'aaa', 'not mine either');
        expect(await store.list('ns')).toStrictEqual([
          ['10', 2],
          ['9', 1],
          ['Zulu', 4],
          ['alpha', 5],
          ['bravo', 5],
          ['charlie', 7],
          ['delta', 5],
        ]);
      });

      it('sorts by Unicode code point, the same on every backend', async () => {
        // U+FF61 sorts before U+1F680 by code point (and in UTF-8), but after it in UTF-16.
        for (const k of ['🚀', '\uff61', 'é', 'z', '']) await store.set('ns', k, k);
        expect((await store.list('ns')).map(([k]) => k)).toStrictEqual(['', 'z', 'é', '\uff61', '🚀']);
      });

      it('stops listing deleted keys', async () => {
        await store.set('ns', 'a', 1);
        await store.set('ns', 'b', 2);
        await store.delete('ns', 'a');
        expect(await store.list('ns')).toStrictEqual([['b', 2]]);
      });
    });

    describe('TTL', () => {
      it('expires a key once its TTL has passed', async () => {
        await store.set('ns', 'k', 'v', { ttlMs: 1000 });
        t += 999;
        expect(await store.get('ns', 'k')).toBe('v');
        t += 1;
        expect(await store.get('ns', 'k')).toBeUndefined();
        t += 1_000_000;
        expect(await store.get('ns', 'k')).toBeUndefined();
      });

      it('hides expired keys from list, delete, incr and compareAndSet', async () => {
        await store.set('ns', 'a', 1, { ttlMs: 10 });
        await store.set('ns', 'b', 2, { ttlMs: 10 });
        await store.set('ns', 'c', 3, { ttlMs: 10 });
        await store.set('ns', 'd', 4, { ttlMs: 10 });
        await store.set('ns', 'keep', 'forever');
        t += 10;
        expect(await store.list('ns')).toStrictEqual([['keep', 'forever']]);
        expect(await store.delete('ns', 'a')).toBe(false);
        expect(await store.incr('ns', 'b', 5)).toBe(5); // starts again from 0
        expect(await store.compareAndSet('ns', 'c', 3, 'x')).toBe(false);
        expect(await store.compareAndSet('ns', 'd', undefined, 'fresh')).toBe(true);
        expect(await store.list('ns')).toStrictEqual([
          ['b', 5],
          ['d', 'fresh'],
          ['keep', 'forever'],
        ]);
      });

      it('lets a later set without TTL make a key permanent again', async () => {
        await store.set('ns', 'k', 1, { ttlMs: 100 });
        await store.set('ns', 'k', 2);
        t += 1_000_000;
        expect(await store.get('ns', 'k')).toBe(2);
      });

      it('lets a later set with TTL replace the old expiry', async () => {
        await store.set('ns', 'k', 1, { ttlMs: 100 });
        t += 50;
        await store.set('ns', 'k', 2, { ttlMs: 100 });
        t += 99;
        expect(await store.get('ns', 'k')).toBe(2);
        t += 1;
        expect(await store.get('ns', 'k')).toBeUndefined();
      });

      it('incr with a TTL sets the expiry; incr without one keeps it', async () => {
        expect(await store.incr('budget', 'identify', 1, { ttlMs: 5000 })).toBe(1);
        t += 4000;
        expect(await store.incr('budget', 'identify')).toBe(2); // keeps the window
        t += 999;
        expect(await store.get('budget', 'identify')).toBe(2);
        t += 1;
        expect(await store.get('budget', 'identify')).toBeUndefined();

        await store.incr('budget', 'sliding', 1, { ttlMs: 100 });
        t += 90;
        await store.incr('budget', 'sliding', 1, { ttlMs: 100 }); // pushes the expiry back
        t += 90;
        expect(await store.get('budget', 'sliding')).toBe(2);
      });

      it('compareAndSet honours its TTL', async () => {
        expect(await store.compareAndSet('ns', 'lock', undefined, 'me', { ttlMs: 30 })).toBe(true);
        expect(await store.compareAndSet('ns', 'lock', undefined, 'you', { ttlMs: 30 })).toBe(false);
        t += 30;
        expect(await store.compareAndSet('ns', 'lock', undefined, 'you', { ttlMs: 30 })).toBe(true);
        expect(await store.get('ns', 'lock')).toBe('you');
      });

      it('rejects a TTL that is not a positive finite number', async () => {
        for (const ttlMs of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
          await expect(store.set('ns', 'k', 1, { ttlMs })).rejects.toThrow(RangeError);
          await expect(store.incr('ns', 'k', 1, { ttlMs })).rejects.toThrow(RangeError);
          await expect(store.compareAndSet('ns', 'k', undefined, 1, { ttlMs })).rejects.toThrow(RangeError);
        }
        expect(await store.get('ns', 'k')).toBeUndefined();
      });
    });

    describe('incr', () => {
      it('counts a missing key as 0 and adds 1 by default', async () => {
        expect(await store.incr('ns', 'n')).toBe(1);
        expect(await store.incr('ns', 'n')).toBe(2);
        expect(await store.get('ns', 'n')).toBe(2);
      });

      it('adds arbitrary and negative deltas', async () => {
        expect(await store.incr('ns', 'n', 10)).toBe(10);
        expect(await store.incr('ns', 'n', -3)).toBe(7);
        expect(await store.incr('ns', 'n', -20)).toBe(-13);
        expect(await store.incr('ns', 'm', -1)).toBe(-1);
        expect(await store.incr('ns', 'f', 0.5)).toBe(0.5);
      });

      it('builds on a number written by set', async () => {
        await store.set('ns', 'n', 40);
        expect(await store.incr('ns', 'n', 2)).toBe(42);
      });

      it('rejects a non-numeric stored value and leaves it alone', async () => {
        await store.set('ns', 's', '5');
        await expect(store.incr('ns', 's')).rejects.toThrow(TypeError);
        expect(await store.get('ns', 's')).toBe('5');
        await store.set('ns', 'z', null);
        await expect(store.incr('ns', 'z')).rejects.toThrow(TypeError);
      });

      it('rejects a non-finite delta', async () => {
        await expect(store.incr('ns', 'n', Number.NaN)).rejects.toThrow(TypeError);
        await expect(store.incr('ns', 'n', Number.POSITIVE_INFINITY)).rejects.toThrow(TypeError);
        expect(await store.get('ns', 'n')).toBeUndefined();
      });

      it('is atomic: 200 parallel increments give the exact total', async () => {
        const results = await Promise.all(Array.from({ length: 200 }, (_, i) => store.incr('ns', 'n', i % 2 === 0 ? 2 : 1)));
        expect(await store.get('ns', 'n')).toBe(300);
        // Every intermediate total was seen by exactly one caller.
        expect(new Set(results).size).toBe(200);
        expect(Math.max(...results)).toBe(300);
      });
    });

    describe('compareAndSet', () => {
      it('writes an absent key when expecting undefined', async () => {
        expect(await store.compareAndSet('ns', 'k', undefined, 'v')).toBe(true);
        expect(await store.get('ns', 'k')).toBe('v');
      });

      it('does not write a present key when expecting undefined', async () => {
        await store.set('ns', 'k', 'old');
        expect(await store.compareAndSet('ns', 'k', undefined, 'new')).toBe(false);
        expect(await store.get('ns', 'k')).toBe('old');
      });

      it('does not write an absent key when expecting a value (even null)', async () => {
        expect(await store.compareAndSet('ns', 'k', null, 'v')).toBe(false);
        expect(await store.compareAndSet('ns', 'k', 0, 'v')).toBe(false);
        expect(await store.get('ns', 'k')).toBeUndefined();
      });

      it('does not write on a mismatch', async () => {
        await store.set('ns', 'k', 1);
        expect(await store.compareAndSet('ns', 'k', 2, 3)).toBe(false);
        expect(await store.compareAndSet('ns', 'k', '1', 3)).toBe(false);
        expect(await store.compareAndSet('ns', 'k', [1], 3)).toBe(false);
        expect(await store.get('ns', 'k')).toBe(1);
      });

      it('writes on a match', async () => {
        await store.set('ns', 'k', 'a');
        expect(await store.compareAndSet('ns', 'k', 'a', 'b')).toBe(true);
        expect(await store.compareAndSet('ns', 'k', 'a', 'c')).toBe(false);
        expect(await store.get('ns', 'k')).toBe('b');
        await store.set('ns', 'n', null);
        expect(await store.compareAndSet('ns', 'n', null, false)).toBe(true);
        expect(await store.get('ns', 'n')).toBe(false);
      });

      it('compares objects deeply, ignoring key order but not array order', async () => {
        await store.set('ns', 'k', { epoch: 3, shards: [0, 1, 2], owner: { id: 'a', since: 1 } });
        expect(await store.compareAndSet('ns', 'k', { epoch: 3, shards: [0, 2, 1], owner: { id: 'a', since: 1 } }, 'x')).toBe(false);
        expect(await store.compareAndSet('ns', 'k', { epoch: 3, shards: [0, 1, 2], owner: { id: 'a' } }, 'x')).toBe(false);
        expect(await store.compareAndSet('ns', 'k', { epoch: 3, shards: [0, 1, 2], owner: { id: 'a', since: 1, x: null } }, 'x')).toBe(false);
        expect(
          await store.compareAndSet('ns', 'k', { owner: { since: 1, id: 'a' }, shards: [0, 1, 2], epoch: 3 }, { epoch: 4 }),
        ).toBe(true);
        expect(await store.get('ns', 'k')).toStrictEqual({ epoch: 4 });
      });

      it('lets exactly one of many concurrent writers win', async () => {
        await store.set('ns', 'k', { epoch: 0 });
        const wins = await Promise.all(
          Array.from({ length: 50 }, (_, i) => store.compareAndSet('ns', 'k', { epoch: 0 }, { epoch: 1, by: i })),
        );
        expect(wins.filter(Boolean)).toHaveLength(1);
        const winner = wins.indexOf(true);
        expect(await store.get('ns', 'k')).toStrictEqual({ epoch: 1, by: winner });
      });
    });

    describe('mutation isolation', () => {
      it('is unaffected by mutating a value after set', async () => {
        const value = { list: [1, 2], nested: { a: 'x' } };
        await store.set('ns', 'k', value);
        value.list.push(3);
        value.nested.a = 'changed';
        expect(await store.get('ns', 'k')).toStrictEqual({ list: [1, 2], nested: { a: 'x' } });
      });

      it('is unaffected by mutating a value returned by get or list', async () => {
        await store.set('ns', 'k', { list: [1, 2] });
        const got = (await store.get<{ list: number[] }>('ns', 'k'))!;
        got.list.push(99);
        const listed = (await store.list<{ list: number[] }>('ns'))[0]![1];
        listed.list.length = 0;
        expect(await store.get('ns', 'k')).toStrictEqual({ list: [1, 2] });
      });

      it('is unaffected by mutating a value after compareAndSet', async () => {
        const value = { owner: 'a' };
        await store.compareAndSet('ns', 'k', undefined, value);
        value.owner = 'b';
        expect(await store.get('ns', 'k')).toStrictEqual({ owner: 'a' });
      });
    });

    describe('lifecycle', () => {
      it('ping resolves', async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });

      it('applies writes in the order they are called, even when nobody awaited the earlier ones', async () => {
        const writes = [
          store.set('ns', 'k', 1),
          store.set('ns', 'k', 2),
          store.delete('ns', 'gone'),
          store.set('ns', 'gone', 'back'),
          store.incr('ns', 'n'),
          store.incr('ns', 'n', 2),
          store.set('ns', 'k', 3),
        ];
        // A read issued after them sees all of them, before any of their promises was awaited.
        const seen = store.get('ns', 'k');
        await Promise.all(writes);
        expect(await seen).toBe(3);
        expect(await store.get('ns', 'gone')).toBe('back');
        expect(await store.get('ns', 'n')).toBe(3);
      });

      it('flush resolves', async () => {
        await store.set('ns', 'k', 1);
        await expect(store.flush()).resolves.toBeUndefined();
        expect(await store.get('ns', 'k')).toBe(1);
      });

      it('has a kind', () => {
        expect(typeof store.kind).toBe('string');
        expect(store.kind.length).toBeGreaterThan(0);
      });

      it('rejects every operation after close, and close is idempotent', async () => {
        await store.set('ns', 'k', 1);
        await store.close();
        await expect(store.close()).resolves.toBeUndefined();
        const ops: Array<() => Promise<unknown>> = [
          () => store.get('ns', 'k'),
          () => store.set('ns', 'k', 2),
          () => store.delete('ns', 'k'),
          () => store.list('ns'),
          () => store.incr('ns', 'n'),
          () => store.compareAndSet('ns', 'k', 1, 2),
          () => store.ping(),
          () => store.flush(),
        ];
        for (const op of ops) await expect(op()).rejects.toThrow(Error);
      });
    });
  });
}
