/**
 * A server on the Redis store (`store: {kind: redis}`), against a private redis-server:
 * it starts whether or not Redis answers, says so on /readyz (503 until it does, with
 * the instance id either way), and recovers by itself when Redis comes back.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { RedisBroker } from '../../src/cluster/redis-broker.js';
import type { RedisStore } from '../../src/store/index.js';
import { haveRedisServer, startRedisServer, type RedisServer } from '../support/redis-server.js';
import { ADMIN_TOKEN, BUS_TOKEN, RawPeer, startTestServer, type TestServer } from '../support/server.js';

let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
});

/**
 * Resolves when the server's Redis connections are (back) up, or (`up` false) down: the
 * store's client and the cluster broker (built on the store's URL) alike, /readyz answers
 * from both. ioredis' own events and the broker's readiness callback, no polling.
 */
function redisState(s: TestServer, up = true): Promise<void> {
  const client = (s.muster.store as RedisStore).client;
  const store =
    (client.status === 'ready') === up ? Promise.resolve() : new Promise<void>((resolve) => client.once(up ? 'ready' : 'close', () => resolve()));
  const broker = s.muster.broker as RedisBroker;
  const joined =
    broker.ready === up
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const off = broker.onReady((ready) => {
            if (ready !== up) return;
            off();
            resolve();
          });
        });
  return Promise.all([store, joined]).then(() => undefined);
}
const connected = (s: TestServer): Promise<void> => redisState(s, true);

describe.skipIf(!haveRedisServer)('server on the Redis store', () => {
  let redis: RedisServer;
  let seq = 0;
  beforeAll(async () => {
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await redis?.close();
  });
  const start = (url = redis.url): Promise<TestServer> => startTestServer({ store: { kind: 'redis', url, prefix: `srv${++seq}:` }, instanceId: `inst-${seq}` });

  it('is ready once Redis answers, and shows its instance id on /readyz, /metrics and the status route', async () => {
    srv = await start();
    expect(srv.muster.store.kind).toBe('redis');
    const r = await fetch(`${srv.httpBase}/readyz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ready', instanceId: srv.muster.instanceId });
    expect(srv.muster.instanceId).toMatch(/^inst-\d+$/);
    const metrics = await (await fetch(`${srv.httpBase}/metrics`)).text();
    expect(metrics).toContain(`muster_instance_info{instance_id="${srv.muster.instanceId}"} 1`);
    const status = await srv.muster.http.inject({ url: '/api/v1/status', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(status.json()).toMatchObject({ store: 'redis', instanceId: srv.muster.instanceId });
    // Peers are served as with any store.
    const p = await RawPeer.open(`${srv.wsBase}/bus`);
    p.send({ op: 1, data: { token: BUS_TOKEN } });
    expect(await p.next()).toMatchObject({ op: 1 });
    p.close();
  });

  it('reports 503 while Redis is away and recovers by itself', async () => {
    const own = await startRedisServer();
    try {
      srv = await start(own.url);
      await connected(srv);
      expect((await srv.muster.http.inject({ url: '/readyz' })).statusCode).toBe(200);
      const gone = redisState(srv, false);
      await own.stop();
      await gone;
      const down = await srv.muster.http.inject({ url: '/readyz' });
      expect(down.statusCode).toBe(503);
      expect(down.json()).toMatchObject({ status: 'unavailable', instanceId: srv.muster.instanceId });
      const back = connected(srv);
      await own.start();
      await back;
      expect((await srv.muster.http.inject({ url: '/readyz' })).statusCode).toBe(200);
    } finally {
      await srv?.stop();
      srv = undefined;
      await own.close();
    }
  });

  it('starts while Redis does not answer yet, and becomes ready when it does', async () => {
    const own = await startRedisServer();
    await own.stop();
    try {
      srv = await start(own.url);
      expect((await srv.muster.http.inject({ url: '/healthz' })).statusCode).toBe(200);
      expect((await srv.muster.http.inject({ url: '/readyz' })).statusCode).toBe(503);
      const up = connected(srv);
      await own.start();
      await up;
      expect((await srv.muster.http.inject({ url: '/readyz' })).statusCode).toBe(200);
    } finally {
      await srv?.stop();
      srv = undefined;
      await own.close();
    }
  });
});
