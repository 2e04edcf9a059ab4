import { afterAll, afterEach, beforeAll } from 'vitest';
import { RedisBroker } from '../../src/cluster/redis-broker.js';
import { startRedisServer, type RedisServer } from './redis-server.js';

/**
 * Redis brokers for one test file: a private redis-server for the file, and pairs of
 * started brokers (instances `one` and `two`) on a fresh key prefix per pair, closed after
 * each test. Call at the top level of the file (it registers the hooks).
 */
export function redisBrokers(tag: string): {
  /** The file's redis-server (stop and start it to play an outage). */
  server(): RedisServer;
  /** The key prefix of the last pair. */
  prefix(): string;
  /** Two started brokers; with `met`, also once `one` has seen `two` and both have subscribed. */
  pair(ttl: number, opts?: { met?: boolean }): Promise<[RedisBroker, RedisBroker]>;
} {
  let redis: RedisServer | undefined;
  const brokers: RedisBroker[] = [];
  let n = 0;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.close();
  });
  afterEach(async () => {
    await Promise.all(brokers.splice(0).map((b) => b.close()));
  });
  const server = (): RedisServer => {
    if (!redis) throw new Error('the redis-server is not started yet');
    return redis;
  };
  return {
    server,
    prefix: () => `${tag}${n}:`,
    async pair(ttl, opts = {}) {
      const prefix = `${tag}${++n}:`;
      const url = server().url;
      const a = new RedisBroker({ url, prefix, presenceTtl: ttl, instanceId: 'one' });
      const b = new RedisBroker({ url, prefix, presenceTtl: ttl, instanceId: 'two' });
      brokers.push(a, b);
      const seen = opts.met ? new Promise<void>((resolve) => a.onPeer((id, up) => id === 'two' && up && resolve())) : undefined;
      await a.start();
      await b.start();
      if (seen) {
        await seen;
        await Promise.all([a.subscribed(), b.subscribed()]);
      }
      return [a, b];
    },
  };
}
