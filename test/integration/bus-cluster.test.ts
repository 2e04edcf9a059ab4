import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RedisBroker } from '../../src/cluster/redis-broker.js';
import type { BusDialect } from '../../src/dialects/bus/dialect.js';
import { BUS_TOKEN, RawPeer, startTestServer, until, type TestServer } from '../support/server.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';
import { ensureBuilt, SECRETS, startServer } from '../chaos/server.js';

/**
 * Cluster mode for the bus: two Muster servers ("one" and "two") on one redis-server,
 * services on each, talking across. Each server runs on its own manual clock (request
 * timeouts); presence runs on real time (a short TTL for the crash test).
 */

let redis: RedisServer;
let one: TestServer;
let two: TestServer;
const peers: RawPeer[] = [];
let run = 0;

beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis.close();
});

beforeEach(async () => {
  const prefix = `bus${++run}:`;
  const cluster = (instanceId: string) => ({ instanceId, cluster: { redisUrl: redis.url, prefix, presenceTtl: 1000 } });
  one = await startTestServer(cluster('one'));
  two = await startTestServer(cluster('two'));
});

/** Servers a test stopped or crashed: their worlds are not checked for leaks. */
const gone = new Set<TestServer>();

afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  // Nothing leaks on a server still running: its own services, the replicas of the
  // other's, groups and pending requests (on both sides) are all released.
  const empty = JSON.stringify({ services: 0, connections: 0, groups: 0, pendingRequests: 0 });
  for (const s of [one, two]) {
    if (gone.has(s)) continue;
    await until(() => s.muster.transport.size === 0 && JSON.stringify(bus(s).summary()) === empty && !bus(s).knows('bee'));
  }
  gone.clear();
  await Promise.all([one.stop(), two.stop()]);
});

function bus(s: TestServer): BusDialect {
  return s.muster.dialect<BusDialect>('bus') as BusDialect;
}

interface Service {
  peer: RawPeer;
  id: string;
}

async function identify(s: TestServer, data: Record<string, unknown> = {}): Promise<Service> {
  const peer = await RawPeer.open(`${s.wsBase}/bus`);
  peers.push(peer);
  peer.send({ op: 1, data: { token: BUS_TOKEN, ...data } });
  const f = await peer.next<{ op: number; data: { id: string } }>();
  expect(f.op).toBe(1);
  return { peer, id: f.data.id };
}

/** Waits until each server knows every service of the other. */
async function known(...pairs: Array<[TestServer, Service]>): Promise<void> {
  for (const [s, svc] of pairs) await until(() => bus(s).knows(svc.id));
}

describe('bus across two instances', () => {
  it('routes DIRECT (by id and name), GROUP and GLOBAL between instances, in order per sender', async () => {
    const a = await identify(one, { name: 'alpha' });
    const c = await identify(one, { group: 'g' });
    const b = await identify(two, { name: 'bee', group: 'g' });
    await known([one, b], [two, a], [two, c]);
    for (let i = 0; i < 20; i++) a.peer.send({ op: 0, event: 'N', data: i, intent: { target: 'DIRECT', identifier: i % 2 ? 'bee' : b.id } });
    a.peer.send({ op: 0, event: 'G', intent: { target: 'GROUP', identifier: 'g' } });
    a.peer.send({ op: 0, event: 'ALL', intent: { target: 'GLOBAL' } });
    for (let i = 0; i < 20; i++) {
      expect(await b.peer.next()).toEqual({ op: 0, event: 'N', data: i, intent: { target: 'DIRECT', identifier: i % 2 ? 'bee' : b.id }, source: a.id });
    }
    expect(await b.peer.next()).toEqual({ op: 0, event: 'G', intent: { target: 'GROUP', identifier: 'g' }, source: a.id });
    expect(await b.peer.next()).toEqual({ op: 0, event: 'ALL', intent: { target: 'GLOBAL' }, source: a.id });
    expect(await c.peer.next()).toMatchObject({ event: 'G', source: a.id });
    expect(await c.peer.next()).toMatchObject({ event: 'ALL', source: a.id });
    // And back, by name, with a snowflake that keeps its digits.
    b.peer.send('{"op":0,"event":"BACK","data":{"id":1234567890123456789012},"intent":{"target":"DIRECT","identifier":"alpha"}}');
    expect(await a.peer.nextRaw()).toBe(`{"op":0,"event":"BACK","data":{"id":1234567890123456789012},"intent":{"target":"DIRECT","identifier":"alpha"},"source":"${b.id}"}`);
    // GLOBAL from two, without self: reaches both on one.
    b.peer.send({ op: 0, event: 'HELLO', intent: { target: 'GLOBAL' } });
    expect(await a.peer.next()).toMatchObject({ event: 'HELLO', source: b.id });
    expect(await c.peer.next()).toMatchObject({ event: 'HELLO', source: b.id });
    expect(await b.peer.quiet()).toBe(true);
    // A name in use on the other instance is taken.
    const dup = await RawPeer.open(`${one.wsBase}/bus`);
    peers.push(dup);
    dup.send({ op: 1, data: { token: BUS_TOKEN, name: 'bee' } });
    expect(await dup.next()).toMatchObject({ op: 2, data: { reason: 'NAME_TAKEN' } });
  });

  it('matches requests and REPLYs across instances, with REPLY_END for a collection and TIMEOUT when nobody answers', async () => {
    const a = await identify(one);
    const c = await identify(one, { group: 'g' });
    const b = await identify(two, { name: 'bee', group: 'g' });
    await known([one, b], [two, a], [two, c]);

    a.peer.send({ op: 0, id: 'r1', event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: 'bee' } });
    expect(await b.peer.next()).toMatchObject({ id: 'r1', event: 'ASK', source: a.id });
    b.peer.send({ op: 5, id: 'r1', data: { ok: 1 } });
    expect(await a.peer.next()).toEqual({ op: 5, id: 'r1', data: { ok: 1 }, source: b.id });

    a.peer.send({ op: 0, id: 'r2', event: 'POLL', expect_reply: 'all', intent: { target: 'GROUP', identifier: 'g' } });
    expect(await b.peer.next()).toMatchObject({ id: 'r2', source: a.id });
    expect(await c.peer.next()).toMatchObject({ id: 'r2', source: a.id });
    b.peer.send({ op: 5, id: 'r2', data: 'b' });
    expect(await a.peer.next()).toEqual({ op: 5, id: 'r2', data: 'b', source: b.id });
    c.peer.send({ op: 5, id: 'r2', data: 'c' });
    expect(await a.peer.next()).toEqual({ op: 5, id: 'r2', data: 'c', source: c.id });
    expect(await a.peer.next()).toEqual({ op: 5, id: 'r2', event: 'REPLY_END', data: { received: 2, expected: 2, missing: [] } });

    // Nobody answers: TIMEOUT at the requester's instance's timeout.
    a.peer.send({ op: 0, id: 'r3', event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: b.id } });
    expect(await b.peer.next()).toMatchObject({ id: 'r3' });
    one.clock.advance(10_000);
    expect(await a.peer.next()).toEqual({ op: 5, id: 'r3', data: { error: 'TIMEOUT' } });
    // Too late: dropped at one. The marker behind it on the same path comes first.
    b.peer.send({ op: 5, id: 'r3', data: 'late' });
    b.peer.send({ op: 0, event: 'MARK', intent: { target: 'DIRECT', identifier: a.id } });
    expect(await a.peer.next()).toMatchObject({ event: 'MARK', source: b.id });

    // A collection where one member never answers: REPLY_END names it.
    a.peer.send({ op: 0, id: 'r4', event: 'POLL', expect_reply: 'all', intent: { target: 'GROUP', identifier: 'g' } });
    await b.peer.next();
    await c.peer.next();
    c.peer.send({ op: 5, id: 'r4', data: 'c' });
    expect(await a.peer.next()).toMatchObject({ id: 'r4', data: 'c' });
    one.clock.advance(10_000);
    expect(await a.peer.next()).toEqual({ op: 5, id: 'r4', event: 'REPLY_END', data: { received: 1, expected: 2, missing: [b.id] } });

    // A service that was not asked cannot answer: its REPLY is dropped.
    a.peer.send({ op: 0, id: 'r5', event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: c.id } });
    await c.peer.next();
    b.peer.send({ op: 5, id: 'r5', data: 'forged' });
    b.peer.send({ op: 0, event: 'MARK2', intent: { target: 'DIRECT', identifier: a.id } });
    expect(await a.peer.next()).toMatchObject({ event: 'MARK2' });
    c.peer.send({ op: 5, id: 'r5', data: 'real' });
    expect(await a.peer.next()).toEqual({ op: 5, id: 'r5', data: 'real', source: c.id });
  });

  it('answers a pending request to a service on an instance that dies with NO_ROUTE, within the presence TTL', async () => {
    const a = await identify(one);
    const b = await identify(two, { name: 'bee', group: 'g' });
    await known([one, b], [two, a]);
    a.peer.send({ op: 0, id: 'd1', event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: 'bee' } });
    a.peer.send({ op: 0, id: 'd2', event: 'POLL', expect_reply: 'all', intent: { target: 'GROUP', identifier: 'g' } });
    await b.peer.next();
    await b.peer.next();
    // A crash: no goodbye, its presence just stops being refreshed.
    gone.add(two);
    (two.muster.broker as RedisBroker).halt();
    expect(await a.peer.next(5000)).toEqual({ op: 5, id: 'd1', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'bee' } });
    expect(await a.peer.next()).toEqual({ op: 5, id: 'd2', event: 'REPLY_END', data: { received: 0, expected: 1, missing: [b.id] } });
    expect(bus(one).knows('bee')).toBe(false);
    a.peer.send({ op: 0, id: 'd3', event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: 'bee' } });
    expect(await a.peer.next()).toEqual({ op: 5, id: 'd3', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'bee' } });
    expect(bus(one).summary()).toEqual({ services: 1, connections: 1, groups: 0, pendingRequests: 0 });
  });

  it('tells the others at once when a service leaves, or its instance stops gracefully', async () => {
    const a = await identify(one);
    const b = await identify(two, { name: 'bee' });
    await known([one, b], [two, a]);
    a.peer.send({ op: 0, id: 'g1', event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: 'bee' } });
    await b.peer.next();
    gone.add(two);
    await two.stop();
    expect(await a.peer.next()).toEqual({ op: 5, id: 'g1', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'bee' } });
    expect(bus(one).knows(b.id)).toBe(false);
  });

  it('says not ready on /readyz while Redis is down, and ready again once it is back', async () => {
    const ready = async (s: TestServer): Promise<number> => (await fetch(`${s.httpBase}/readyz`)).status;
    expect(await ready(one)).toBe(200);
    const broker = one.muster.broker as RedisBroker;
    const down = new Promise<void>((resolve) => broker.onReady((r) => r || resolve()));
    await redis.stop('SIGKILL');
    await down;
    expect(await ready(one)).toBe(503);
    const up = new Promise<void>((resolve) => broker.onReady((r) => r && resolve()));
    await redis.start();
    await up;
    expect(await ready(one)).toBe(200);
  });
});

describe('bus across instances: a real crash', () => {
  beforeAll(() => ensureBuilt());

  it('kill -9 of the process holding a service: a request pending to it gets NO_ROUTE within the presence TTL', { timeout: 30_000 }, async () => {
    // `one` (in process, from beforeEach) and a built server as its own process, on the same cluster.
    const dir = mkdtempSync(join(tmpdir(), 'muster-cluster-'));
    const proc = await startServer({
      dataDir: join(dir, 'data'),
      dialects: ['bus'],
      extra: { store: { kind: 'memory' }, instanceId: 'proc', cluster: { redisUrl: redis.url, prefix: `bus${run}:`, presenceTtl: 1000 } },
    });
    try {
      const a = await identify(one);
      const peer = await RawPeer.open(`${proc.ws}/bus`);
      peers.push(peer);
      peer.send({ op: 1, data: { token: SECRETS.bus, name: 'bee' } });
      const b = (await peer.next<{ data: { id: string } }>()).data.id;
      await until(() => bus(one).knows(b));
      a.peer.send({ op: 0, id: 'k1', event: 'ASK', expect_reply: true, intent: { target: 'DIRECT', identifier: 'bee' } });
      expect(await peer.next()).toMatchObject({ id: 'k1', source: a.id });
      proc.kill9();
      await proc.exited;
      expect(await a.peer.next(5000)).toEqual({ op: 5, id: 'k1', data: { error: 'NO_ROUTE', target: 'DIRECT', identifier: 'bee' } });
      expect(bus(one).knows('bee')).toBe(false);
    } finally {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
