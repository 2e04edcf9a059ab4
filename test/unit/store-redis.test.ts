/**
 * What the Redis store does beyond the shared contract (store.test.ts runs that): its
 * key layout, Redis-side expiry, durability across a Redis crash, and how it reports
 * and recovers from Redis going away. Each test runs against a private redis-server.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore, createStore, redactRedisUrl } from '../../src/store/index.js';
import { EXPIRY_GRACE_MS, redisKeys } from '../../src/store/redis-scripts.js';
import { haveRedisServer, startRedisSentinel, startRedisServer, type RedisServer } from '../support/redis-server.js';

const T0 = 1_700_000_000_000;

/** Resolves when the store reports `status` (event-driven: no timers). */
function statusOnce(): { opts: { onStatus: (s: 'up' | 'down') => void }; next: (s: 'up' | 'down') => Promise<void> } {
  const waiters: Array<{ s: 'up' | 'down'; resolve: () => void }> = [];
  let last: 'up' | 'down' | undefined;
  return {
    opts: {
      onStatus: (s) => {
        last = s;
        for (const w of waiters.splice(0)) {
          if (w.s === s) w.resolve();
          else waiters.push(w);
        }
      },
    },
    next: (s) => (last === s ? Promise.resolve() : new Promise((resolve) => waiters.push({ s, resolve }))),
  };
}

describe.skipIf(!haveRedisServer)('RedisStore', () => {
  let redis: RedisServer;
  let raw: Redis;
  let seq = 0;
  const open: RedisStore[] = [];
  const make = (opts: ConstructorParameters<typeof RedisStore>[0] = {}): RedisStore => {
    const s = new RedisStore({ url: redis.url, prefix: `t${++seq}:`, ...opts });
    open.push(s);
    return s;
  };

  beforeAll(async () => {
    redis = await startRedisServer();
    raw = new Redis(redis.url);
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    raw?.disconnect();
    await redis?.close();
  });

  it('has kind "redis" and is made by createStore', async () => {
    const store = createStore({ kind: 'redis', dataDir: '/nonexistent', redis: { url: redis.url, prefix: 'cs:' } });
    open.push(store as RedisStore);
    expect(store).toBeInstanceOf(RedisStore);
    expect(store.kind).toBe('redis');
    await store.set('ns', 'k', 1);
    expect(await raw.exists('cs:{ns}:k:k')).toBe(1);
  });

  it('keeps each entry under the prefix, with a sorted index per namespace', async () => {
    const store = make({ prefix: 'lay:' });
    await store.set('sharding', 'plan', { shards: [0, 1], halted: false });
    await store.set('sharding', 'b', 2);
    await store.set('clusterio:slaves', 'x', 'y');
    expect((await raw.keys('lay:*')).sort()).toStrictEqual(['lay:{clusterio:slaves}:i', 'lay:{clusterio:slaves}:k:x', 'lay:{sharding}:i', 'lay:{sharding}:k:b', 'lay:{sharding}:k:plan']);
    expect(await raw.zrange('lay:{sharding}:i', '0', '-1')).toStrictEqual(['b', 'plan']);
    // Object keys are kept as written; the canonical form (sorted) is kept for compareAndSet.
    expect(await raw.get('lay:{sharding}:k:plan')).toBe('\n{"halted":false,"shards":[0,1]}\n{"shards":[0,1],"halted":false}');
    expect(await raw.get('lay:{sharding}:k:b')).toBe('\n2');
    expect(Object.keys((await store.get<{ [k: string]: number[] | boolean }>('sharding', 'plan'))!)).toStrictEqual(['shards', 'halted']);
  });

  it('escapes { } and % in a namespace, so every key of it shares one hash tag', () => {
    const keys = redisKeys('p:');
    expect(keys.entry('a}b{c%', 'k')).toBe('p:{a%7Db%7Bc%25}:k:k');
    expect(keys.index('a}b')).toBe('p:{a%7Db}:i');
    expect(keys.fence('sharding')).toBe('p:{sharding}:fence');
    expect(() => redisKeys('bad{prefix}:')).toThrow(RangeError);
  });

  it('lets Redis delete an expired key a grace period after its TTL', async () => {
    const store = make();
    await store.set('ns', 'k', 'v', { ttlMs: 5000 });
    const pttl = await raw.pttl(store.keys.entry('ns', 'k'));
    expect(pttl).toBeGreaterThan(EXPIRY_GRACE_MS);
    expect(pttl).toBeLessThanOrEqual(5000 + EXPIRY_GRACE_MS);
    await store.set('ns', 'k', 'v');
    expect(await raw.pttl(store.keys.entry('ns', 'k'))).toBe(-1);
  });

  it('drops index members whose entry Redis has deleted', async () => {
    const store = make();
    await store.set('ns', 'a', 1);
    await store.set('ns', 'b', 2);
    await raw.del(store.keys.entry('ns', 'a')); // what Redis' own expiry does
    expect(await store.list('ns')).toStrictEqual([['b', 2]]);
    expect(await raw.zrange(store.keys.index('ns'), '0', '-1')).toStrictEqual(['b']);
  });

  it('compares numbers incr wrote by value, and objects whatever their key order', async () => {
    const store = make({ now: () => T0 });
    await store.incr('ns', 'n', 0.1);
    await store.incr('ns', 'n', 0.2);
    expect(await store.get('ns', 'n')).toBe(0.1 + 0.2);
    expect(await store.compareAndSet('ns', 'n', 0.1 + 0.2, 1)).toBe(true);
    await store.incr('ns', 'big', 2 ** 53 - 1);
    expect(await store.get('ns', 'big')).toBe(Number.MAX_SAFE_INTEGER);
    expect(await store.compareAndSet('ns', 'big', Number.MAX_SAFE_INTEGER, 'x')).toBe(true);
    await store.set('ns', 'o', { b: 1, a: [{ d: 1, c: 2 }] });
    expect(await store.compareAndSet('ns', 'o', { a: [{ c: 2, d: 1 }], b: 1 }, 'y')).toBe(true);
  });

  it('survives a Redis crash with appendonly yes and appendfsync always', async () => {
    const durable = await startRedisServer({ appendonly: true, appendfsync: 'always' });
    const store = new RedisStore({ url: durable.url });
    try {
      await store.set('sharding', 'assignment', { epoch: 7 });
      expect(await store.incr('budget', 'identify', 3)).toBe(3);
      await durable.restart('SIGKILL');
      const again = new RedisStore({ url: durable.url });
      try {
        expect(await again.get('sharding', 'assignment')).toStrictEqual({ epoch: 7 });
        expect(await again.list('budget')).toStrictEqual([['identify', 3]]);
      } finally {
        await again.close();
      }
    } finally {
      await store.close();
      await durable.close();
    }
  });

  it('reports Redis going away (ping rejects at once) and recovers by itself', async () => {
    const own = await startRedisServer();
    const status = statusOnce();
    const store = new RedisStore({ url: own.url, ...status.opts });
    try {
      await store.ping();
      await status.next('up');
      await own.stop();
      await status.next('down');
      await expect(store.ping()).rejects.toMatchObject({ name: 'STORE_UNAVAILABLE' });
      // A write made while Redis is away waits for it, in order, and lands.
      const pending = store.set('ns', 'k', 'while-down');
      await own.start();
      await status.next('up');
      await pending;
      await store.ping();
      expect(await store.get('ns', 'k')).toBe('while-down');
    } finally {
      await store.close();
      await own.close();
    }
  });

  it('fails a command made while Redis is away once offlineTimeoutMs has passed', async () => {
    const own = await startRedisServer();
    const status = statusOnce();
    const store = new RedisStore({ url: own.url, offlineTimeoutMs: 50, ...status.opts });
    try {
      await store.ping();
      await own.stop();
      await status.next('down');
      await expect(store.set('ns', 'k', 1)).rejects.toMatchObject({ name: 'STORE_UNAVAILABLE' });
      await expect(store.get('ns', 'k')).rejects.toMatchObject({ name: 'STORE_UNAVAILABLE' });
      await expect(store.flush()).rejects.toMatchObject({ name: 'STORE_UNAVAILABLE' });
    } finally {
      await store.close();
      await own.close();
    }
  });

  it('finds the primary through Redis Sentinel', async () => {
    const sentinel = await startRedisSentinel(redis);
    const store = make({ sentinels: [{ host: '127.0.0.1', port: sentinel.port }], name: sentinel.name });
    try {
      await store.set('ns', 'via-sentinel', { ok: true });
      await store.ping();
      expect(await raw.exists(store.keys.entry('ns', 'via-sentinel'))).toBe(1);
      expect(await store.get('ns', 'via-sentinel')).toStrictEqual({ ok: true });
    } finally {
      await store.close();
      await sentinel.close();
    }
  });

  it('with durability.replicas, rejects a write no replica acknowledged in time', async () => {
    const store = make({ durability: { replicas: 1, timeoutMs: 20 } });
    await expect(store.set('ns', 'k', 1)).rejects.toThrow(/0 of 1 Redis replicas/);
    // Applied on the primary all the same: the rejection says it is not known to be safe.
    expect(await raw.exists(store.keys.entry('ns', 'k'))).toBe(1);
  });

  it('fencedSet writes only with the namespace current fencing token', async () => {
    const store = make();
    expect(await store.fencedSet('sharding', 'k', 1, 5)).toBe(false);
    await raw.set(store.keys.fence('sharding'), '5');
    expect(await store.fencedSet('sharding', 'k', 1, 5)).toBe(true);
    expect(await store.fencedSet('sharding', 'k', 2, 4)).toBe(false);
    expect(await store.get('sharding', 'k')).toBe(1);
    await expect(store.fencedSet('sharding', 'k', 1, 1.5)).rejects.toThrow(TypeError);
  });

  it('rejects a prefix with braces, and durability on Redis Cluster', () => {
    expect(() => new RedisStore({ url: redis.url, prefix: '{x}' })).toThrow(RangeError);
    expect(() => new RedisStore({ cluster: [{ host: '127.0.0.1', port: redis.port }], durability: { replicas: 1 } })).toThrow(/Cluster/);
  });

  it('redacts the password of a URL', () => {
    expect(redactRedisUrl('redis://user:hunter2@db.example:6380/2')).toBe('redis://user:***@db.example:6380/2');
    expect(redactRedisUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(redactRedisUrl('not a url')).not.toContain('not a url');
  });
});
