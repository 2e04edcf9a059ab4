/**
 * The leader lease (cluster/lease.ts) against a private redis-server. Each holder is an
 * instance of its own: its own connection and its own ManualClock, so "a paused
 * process" is a holder whose clock does not move (it never renews). Redis' own expiry
 * of the lease is played by deleting the key, which is what Redis does when PX runs out.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisLease, type LeaseOptions } from '../../src/cluster/lease.js';
import { ManualClock } from '../../src/core/clock.js';
import { RedisStore } from '../../src/store/index.js';
import { redisKeys } from '../../src/store/redis-scripts.js';
import { haveRedisServer, startRedisServer, type RedisServer } from '../support/redis-server.js';

const LEASE_MS = 3000;
const RENEW_MS = 1000;
const MARGIN_MS = 600;

interface Holder {
  name: string;
  store: RedisStore;
  clock: ManualClock;
  lease: RedisLease;
  events: string[];
  /** Moves this holder's clock and waits for the attempt that started. */
  advance(ms: number): Promise<void>;
}

describe.skipIf(!haveRedisServer)('RedisLease', () => {
  let redis: RedisServer;
  let raw: Redis;
  let seq = 0;
  let prefix = '';
  const made: Holder[] = [];

  const holder = (name: string, url = redis.url, opts: Partial<LeaseOptions> = {}): Holder => {
    const store = new RedisStore({ url, prefix });
    const clock = new ManualClock();
    const events: string[] = [];
    const lease = new RedisLease({
      store,
      ns: 'sharding',
      instanceId: name,
      clock,
      leaseMs: LEASE_MS,
      renewEveryMs: RENEW_MS,
      marginMs: MARGIN_MS,
      onElected: (token) => events.push(`elected ${token}`),
      onDeposed: () => events.push('deposed'),
      ...opts,
    });
    const h: Holder = {
      name,
      store,
      clock,
      lease,
      events,
      async advance(ms) {
        clock.advance(ms);
        await lease.idle();
      },
    };
    made.push(h);
    return h;
  };
  const leaseKey = (): string => `${prefix}{sharding}:lease`;
  const tokenOf = (h: Holder): number => h.lease.state.token as number;

  beforeAll(async () => {
    redis = await startRedisServer();
    raw = new Redis(redis.url);
  });
  afterEach(async () => {
    for (const h of made.splice(0)) {
      await h.lease.stop();
      await h.store.close();
    }
    prefix = `l${++seq}:`;
  });
  afterAll(async () => {
    raw?.disconnect();
    await redis?.close();
  });
  prefix = `l${++seq}:`;

  it('elects exactly one of two holders, with a lease in Redis that has a PX and our instance id', async () => {
    const a = holder('a');
    const b = holder('b');
    await Promise.all([a.lease.start(), b.lease.start()]);
    expect([a.lease.leader, b.lease.leader].filter(Boolean)).toHaveLength(1);
    const [leader, other] = a.lease.leader ? [a, b] : [b, a];
    expect(leader.events).toStrictEqual([`elected ${tokenOf(leader)}`]);
    expect(other.events).toStrictEqual([]);
    expect(await raw.get(leaseKey())).toBe(`${tokenOf(leader)}:${leader.name}`);
    const pttl = await raw.pttl(leaseKey());
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(LEASE_MS);
    // The other keeps trying and keeps failing while the leader renews.
    for (let i = 0; i < 5; i++) {
      await leader.advance(RENEW_MS);
      await other.advance(RENEW_MS);
    }
    expect(leader.lease.leader).toBe(true);
    expect(other.lease.leader).toBe(false);
    expect(leader.events).toHaveLength(1);
  });

  it('a holder that stops renewing is taken over after its lease, and its fenced writes are refused', async () => {
    const a = holder('a');
    const b = holder('b');
    await a.lease.start();
    await b.lease.start();
    const t1 = tokenOf(a);
    expect(await a.store.fencedSet('sharding', 'assignment', { by: 'a' }, t1)).toBe(true);

    // a is paused: its clock stands still. Its lease runs out in Redis.
    await raw.del(leaseKey());
    await b.advance(RENEW_MS);
    expect(b.lease.leader).toBe(true);
    const t2 = tokenOf(b);
    expect(t2).toBeGreaterThan(t1);

    // a still believes it leads (it has not run since), but its writes are fenced off.
    expect(a.lease.leader).toBe(true);
    expect(await a.store.fencedSet('sharding', 'assignment', { by: 'a, late' }, t1)).toBe(false);
    expect(await b.store.fencedSet('sharding', 'assignment', { by: 'b' }, t2)).toBe(true);
    expect(await a.store.get('sharding', 'assignment')).toStrictEqual({ by: 'b' });

    // When a runs again, its renew finds the lease is b's: deposed, and it does not take it back.
    await a.advance(RENEW_MS);
    expect(a.events).toStrictEqual([`elected ${t1}`, 'deposed']);
    await a.advance(RENEW_MS);
    expect(a.lease.leader).toBe(false);
    expect(await raw.get(leaseKey())).toBe(`${t2}:b`);
  });

  it('a leader that cannot reach Redis stops leading before its lease ends, by the margin', async () => {
    const own = await startRedisServer();
    try {
      const a = holder('a', own.url);
      await a.lease.start();
      expect(a.lease.leader).toBe(true);
      await own.stop();
      // Renewals now wait for Redis; the lease's deadline does not.
      a.clock.advance(LEASE_MS - MARGIN_MS - 1);
      expect(a.lease.leader).toBe(true);
      a.clock.advance(1);
      expect(a.lease.leader).toBe(false);
      expect(a.events.at(-1)).toBe('deposed');
      await own.start();
    } finally {
      for (const h of made.splice(0)) {
        await h.lease.stop();
        await h.store.close();
      }
      await own.close();
    }
  });

  it('releases the lease on stop, so another takes it at its next try', async () => {
    const a = holder('a');
    const b = holder('b');
    await a.lease.start();
    await b.lease.start();
    await a.lease.stop();
    expect(a.events.at(-1)).toBe('deposed');
    expect(await raw.exists(leaseKey())).toBe(0);
    await b.advance(RENEW_MS);
    expect(b.lease.leader).toBe(true);
  });

  it('a holder stopped while its first attempt is under way gives back what it took', async () => {
    const a = holder('a');
    const first = a.lease.start();
    const stopped = a.lease.stop();
    await first;
    await stopped;
    expect(a.lease.leader).toBe(false);
    expect(await raw.exists(leaseKey())).toBe(0);
  });

  it('a failed attempt does not move the leader fencing token', async () => {
    const a = holder('a');
    const b = holder('b');
    await a.lease.start();
    await b.lease.start();
    for (let i = 0; i < 3; i++) await b.advance(RENEW_MS);
    expect(await a.store.fencedSet('sharding', 'k', 1, tokenOf(a))).toBe(true);
  });

  it('after a Redis restart that lost everything, the leader is deposed and a new token is larger', async () => {
    const own = await startRedisServer();
    try {
      const a = holder('a', own.url);
      await a.lease.start();
      const t1 = tokenOf(a);
      const up = new Promise<void>((resolve) => a.store.client.once('ready', () => resolve()));
      await own.restart();
      await up;
      await a.advance(RENEW_MS); // the renew finds no lease
      expect(a.lease.leader).toBe(false);
      await a.advance(RENEW_MS); // and takes a new one
      expect(a.lease.leader).toBe(true);
      expect(tokenOf(a)).toBeGreaterThan(t1);
      expect(a.events).toStrictEqual([`elected ${t1}`, 'deposed', `elected ${tokenOf(a)}`]);
    } finally {
      for (const h of made.splice(0)) {
        await h.lease.stop();
        await h.store.close();
      }
      await own.close();
    }
  });

  it('refuses settings where renewing cannot keep the lease', () => {
    const store = { client: undefined as never, keys: redisKeys('x:') };
    expect(() => new RedisLease({ store, ns: 'n', instanceId: 'i', clock: new ManualClock(), leaseMs: 1000, renewEveryMs: 900, marginMs: 200 })).toThrow(RangeError);
  });
});
