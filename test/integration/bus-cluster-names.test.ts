import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RedisBroker } from '../../src/cluster/redis-broker.js';
import type { BusDialect } from '../../src/dialects/bus/dialect.js';
import { BUS_TOKEN, RawPeer, startTestServer, until, type TestServer } from '../support/server.js';
import { startRedisServer, type RedisServer } from '../support/redis-server.js';

/**
 * Bus names unique cluster-wide: two Muster servers ("one" and "two") on one real
 * redis-server. Each instance sees the other's names through its replicas, but two
 * IDENTIFYs with the same name at the same moment on both are decided by the claim in
 * Redis: exactly one wins.
 */

let redis: RedisServer;
let one: TestServer;
let two: TestServer;
let prefix = '';
const peers: RawPeer[] = [];
const gone = new Set<TestServer>();
let run = 0;

beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis.close();
});

beforeEach(async () => {
  prefix = `names${++run}:`;
  const cluster = (instanceId: string) => ({ instanceId, cluster: { redisUrl: redis.url, prefix, presenceTtl: 1000 } });
  one = await startTestServer(cluster('one'));
  two = await startTestServer(cluster('two'));
});

afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  const empty = JSON.stringify({ services: 0, connections: 0, groups: 0, pendingRequests: 0 });
  for (const s of [one, two]) if (!gone.has(s)) await until(() => s.muster.transport.size === 0 && JSON.stringify(bus(s).summary()) === empty);
  gone.clear();
  await Promise.all([one.stop(), two.stop()]);
});

function bus(s: TestServer): BusDialect {
  return s.muster.dialect<BusDialect>('bus') as BusDialect;
}

async function open(s: TestServer): Promise<RawPeer> {
  const peer = await RawPeer.open(`${s.wsBase}/bus`);
  peers.push(peer);
  return peer;
}

type Answer = { op: number; data: { id?: string; reason?: string } };

async function identify(s: TestServer, name: string): Promise<Answer> {
  const peer = await open(s);
  peer.send({ op: 1, data: { token: BUS_TOKEN, name } });
  return peer.next<Answer>();
}

/** What Redis holds for the bus's claims. */
async function claims(): Promise<Record<string, string>> {
  const r = new Redis(redis.url);
  try {
    return await r.hgetall(`${prefix}claims`);
  } finally {
    r.disconnect();
  }
}

describe('bus names across instances', () => {
  it('the same name on two instances at the same moment: exactly one wins, every time', async () => {
    for (let round = 0; round < 20; round++) {
      const [p1, p2] = await Promise.all([open(one), open(two)]);
      // Both IDENTIFYs are on the wire before either instance has heard of the other's.
      p1.send({ op: 1, data: { token: BUS_TOKEN, name: `race-${round}` } });
      p2.send({ op: 1, data: { token: BUS_TOKEN, name: `race-${round}` } });
      const answers = await Promise.all([p1.next<Answer>(), p2.next<Answer>()]);
      const won = answers.filter((a) => a.op === 1);
      const lost = answers.filter((a) => a.op === 2);
      expect(won).toHaveLength(1);
      expect(lost).toEqual([{ op: 2, data: { reason: 'NAME_TAKEN', detail: `the name "race-${round}" is in use` } }]);
      const loser = answers[0]?.op === 2 ? p1 : p2;
      expect((await loser.closed).code).toBe(4004);
    }
    // Every winner is known by its name on both instances, and holds the claim.
    await until(() => [...Array(20).keys()].every((i) => bus(one).knows(`race-${i}`) && bus(two).knows(`race-${i}`)));
    expect(Object.keys(await claims())).toHaveLength(20);
  });

  it('a name is free again cluster-wide when its service leaves; frames sent before IDENTIFIED are delivered after', async () => {
    const first = await open(one);
    first.send({ op: 1, data: { token: BUS_TOKEN, name: 'solo' } });
    const other = await open(two);
    other.send({ op: 1, data: { token: BUS_TOKEN } });
    const otherId = (await other.next<Answer>()).data.id as string;
    await until(() => bus(one).knows(otherId));
    // Sent right behind the IDENTIFY, before its answer: handled once the claim is in.
    first.send({ op: 0, event: 'EARLY', intent: { target: 'DIRECT', identifier: otherId } });
    expect((await first.next<Answer>()).op).toBe(1);
    expect(await other.next()).toMatchObject({ event: 'EARLY' });
    expect(Object.values(await claims())).toEqual([expect.stringMatching(/^one\//)]);
    expect((await identify(two, 'solo')).data.reason).toBe('NAME_TAKEN');
    first.close();
    for (let i = 0; i < 200 && Object.keys(await claims()).length > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await claims()).toEqual({});
    await until(() => !bus(two).knows('solo'));
    expect((await identify(two, 'solo')).op).toBe(1);
  });

  it("a dead instance's names are free once it is found gone", { timeout: 15_000 }, async () => {
    expect((await identify(two, 'ghost')).op).toBe(1);
    await until(() => bus(one).knows('ghost'));
    gone.add(two);
    (two.muster.broker as RedisBroker).halt();
    await until(() => !bus(one).knows('ghost'), 5000);
    expect((await identify(one, 'ghost')).op).toBe(1);
    expect(Object.values(await claims())).toEqual([expect.stringMatching(/^one\//)]);
  });

  it('the broker: a claim is refused while another instance holds the name, released only by its holder, taken over from a dead instance', { timeout: 10_000 }, async () => {
    const b1 = one.muster.broker as RedisBroker;
    const b2 = two.muster.broker as RedisBroker;
    expect(await b1.names.claim('s', 'n', 'c1')).toBe(true);
    expect(await b1.names.claim('s', 'n', 'c1')).toBe(true);
    expect(await b2.names.claim('s', 'n', 'c2')).toBe(false);
    // The same instance may take it over (its caller knows no connection here uses it).
    expect(await b1.names.claim('s', 'n', 'c3')).toBe(true);
    b1.names.release('s', 'n', 'c1');
    expect(await b2.names.claim('s', 'n', 'c2')).toBe(false);
    expect((await claims())['s:n']).toBe('one/c3');
    // Another scope is another name.
    expect(await b2.names.claim('t', 'n', 'c2')).toBe(true);
    b1.names.release('s', 'n', 'c3');
    await b1.flushed();
    expect(await b2.names.claim('s', 'n', 'c2')).toBe(true);
    // A dead instance's claim is taken over once its presence has expired, before anyone reaps it.
    gone.add(two);
    b2.halt();
    expect(await b1.names.claim('s', 'n', 'c4')).toBe(false);
    const r = new Redis(redis.url);
    try {
      for (let i = 0; i < 300 && (await r.exists(`${prefix}alive:two`)) === 1; i++) await new Promise((res) => setTimeout(res, 10));
    } finally {
      r.disconnect();
    }
    expect(await b1.names.claim('s', 'n', 'c4')).toBe(true);
    b1.names.release('s', 'n', 'c4');
    await b1.flushed();
  });

  it("after losing Redis an instance drops its claims whose connection has gone, and keeps the live ones", async () => {
    const live = await open(one);
    live.send({ op: 1, data: { token: BUS_TOKEN, name: 'kept' } });
    expect((await live.next<Answer>()).op).toBe(1);
    const r = new Redis(redis.url);
    try {
      // A claim left from a connection that went while Redis was unreachable (its release lost).
      await r.hset(`${prefix}claims`, 'bus:stale', 'one/00000000-dead-4000-8000-000000000000');
      await r.sadd(`${prefix}claims:one`, 'bus:stale');
      const broker = one.muster.broker as RedisBroker;
      const lost = new Promise<void>((resolve) => broker.onReady((ok) => ok || resolve()));
      const back = lost.then(() => new Promise<void>((resolve) => broker.onReady((ok) => ok && resolve())));
      const list = (await r.client('LIST')) as string;
      for (const line of list.split('\n').filter((l) => l.includes('name=muster-one-'))) await r.client('KILL', 'ID', /id=(\d+)/.exec(line)?.[1] as string);
      await back;
      expect(Object.keys(await r.hgetall(`${prefix}claims`))).toEqual(['bus:kept']);
      expect(await r.smembers(`${prefix}claims:one`)).toEqual(['bus:kept']);
    } finally {
      r.disconnect();
    }
    expect((await identify(two, 'stale')).op).toBe(1);
  });

  it('while Redis is down a name is refused with UNAVAILABLE (1013, retry later); a service without one still identifies', { timeout: 20_000 }, async () => {
    const broker = one.muster.broker as RedisBroker;
    const down = new Promise<void>((resolve) => broker.onReady((r) => r || resolve()));
    await redis.stop('SIGKILL');
    await down;
    const named = await open(one);
    named.send({ op: 1, data: { token: BUS_TOKEN, name: 'later' } });
    expect(await named.next()).toMatchObject({ op: 2, data: { reason: 'UNAVAILABLE' } });
    expect((await named.closed).code).toBe(1013);
    const plain = await open(one);
    plain.send({ op: 1, data: { token: BUS_TOKEN } });
    expect((await plain.next<Answer>()).op).toBe(1);
    const up = new Promise<void>((resolve) => broker.onReady((r) => r && resolve()));
    await redis.start();
    await up;
    expect((await identify(one, 'later')).op).toBe(1);
  });
});
