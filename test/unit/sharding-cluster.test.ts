import { afterEach, describe, expect, it } from 'vitest';
import { STORE_NS } from '../../src/dialects/sharding/dialect.js';
import { edgeTopic, encodeLink } from '../../src/dialects/sharding/link.js';
import { encodeMaster, Op } from '../../src/protocols/sharding/messages.js';
import { mulberry32 } from '../support/random.js';
import { Cluster, config, Control, Instance, startCluster } from '../support/sharding-cluster.js';

/**
 * Cluster mode in one process: several sharding dialects (one per "instance") share one
 * LocalBroker and one store with the lease's fencing; a hand-driven leadership stands for
 * the Redis lease. CONTROLs (scripted over fake sockets) connect to any instance. The
 * leader dies (or pauses); another instance is elected after the lease; every shard must
 * be re-confirmed by the new leader within lease + 1 s (P9), and no shard is ever served
 * by two CONTROLs. Seeded: SHARDING_CLUSTER_SEED replays a run; a failure prints its seed.
 */

let cluster: Cluster | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
});

const BASE_SEED = Number(process.env.SHARDING_CLUSTER_SEED ?? 20261202);
const RUNS = process.env.SHARDING_CLUSTER_SEED ? 1 : 12;

describe('sharding in cluster mode (in-process instances on one broker and one store)', () => {
  for (let k = 0; k < RUNS; k++) {
    const seed = BASE_SEED + k;
    it(`the leader dies: another instance takes over within the lease and re-confirms every shard, none served twice (seed ${seed})`, async () => {
      const cl: Cluster = (cluster = await startCluster(seed));
      await cl.run(Math.floor(cl.rand() * 10) * 1_000);
      const old = cl.leader() ?? cl.fail('no leader');
      const owners = old.dialect.state.shards.map((s) => s.owner);
      // Death: nothing more comes from it, its CONTROLs' sockets drop.
      await cl.kill(old);
      for (const c of cl.controls) if (c.on === old) c.drop();
      const diedAt = cl.clock.now();
      const lease = 5_000 + Math.floor(cl.rand() * 10) * 1_000;
      // Leaderless until the lease ends: CONTROLs reconnect to the survivors, nothing is decided.
      await cl.run(lease, 250);
      cl.elect(cl.pick(cl.alive()));
      let at: number | undefined;
      for (let t = 0; t <= 1_000 && at === undefined; t += 100) {
        await cl.settle();
        cl.check();
        if (cl.confirmed()) at = cl.clock.now();
        else await cl.run(100, 100);
      }
      if (at === undefined) cl.fail(`not every shard re-confirmed within lease + 1 s (lease ${lease} ms)`);
      expect(at - diedAt).toBeLessThanOrEqual(lease + 1_000);
      // Nothing moved: the CONTROLs kept what they served.
      expect(cl.leader()?.dialect.state.shards.map((s) => s.owner)).toEqual(owners);
      // And it stays that way.
      await cl.run(60_000, 1_000);
      if (!cl.confirmed()) cl.fail('the fleet did not stay confirmed after the takeover');
    });
  }

  it('a paused old leader that wakes up after the takeover can neither order nor write (seed-free)', async () => {
    const cl = (cluster = new Cluster(1, config(mulberry32(1), 2), 2, 2));
    const [a, b] = cl.instances as [Instance, Instance];
    cl.elect(a);
    await a.dialect.ready;
    // Every CONTROL is on b; a only leads.
    for (const c of cl.controls) c.connect(b);
    await cl.settle();
    for (let i = 0; i < 10 && !cl.confirmed(); i++) await cl.run(1_000);
    expect(cl.confirmed()).toBe(true);
    // a stalls; its lease ends and b is elected while a has not noticed yet.
    await cl.takeover(b);
    expect(b.dialect.isLeader).toBe(true);
    // a heard b's hello and stepped down on its own.
    expect(a.dialect.isLeader).toBe(false);
    expect(cl.confirmed()).toBe(true);
    expect(cl.controls.map((c) => c.shutdowns)).toEqual([0, 0]);
  });

  it('a leader still believing it leads is fenced: its writes are refused, its orders dropped, and it stops', async () => {
    const cl = (cluster = new Cluster(2, config(mulberry32(2), 2), 2, 2));
    const [a, b] = cl.instances as [Instance, Instance];
    await cl.start(a, () => b);
    expect(cl.confirmed()).toBe(true);
    // A newer token exists (b's election is under way) but no hello has gone out yet.
    const token = cl.store.issue();
    const shutdowns = cl.controls.map((c) => c.shutdowns);
    const halt = a.dialect.routes().find((r) => r.url === '/api/v1/sharding/halt');
    const reply = await halt?.handler({ params: {}, query: {}, body: {}, ip: '127.0.0.1', headers: {} });
    // The halt's write was refused: a stops at once, before its SHUTDOWNs go out.
    expect(reply?.status).toBe(500);
    expect(cl.store.refused).toBeGreaterThan(0);
    expect(a.dialect.isLeader).toBe(false);
    await cl.settle();
    expect(cl.controls.map((c) => c.shutdowns)).toEqual(shutdowns);
    expect(await cl.store.get(STORE_NS, 'fleet')).toBeUndefined();
    b.leadership.elect(token);
    await b.dialect.ready;
    await cl.settle();
    expect(cl.confirmed()).toBe(true);
  });

  it('an announce lost in flight: the first frame from a socket the new leader does not know makes it ask that edge again', async () => {
    const cl = (cluster = new Cluster(6, config(mulberry32(6), 2), 2, 2));
    const [a, b] = cl.instances as [Instance, Instance];
    await cl.start(a, () => b);
    expect(cl.confirmed()).toBe(true);
    await cl.kill(a);
    cl.broker.loseNext((m) => m.k === 'announce');
    await cl.takeover(b);
    expect(cl.broker.lost).toBe(1);
    expect(cl.confirmed()).toBe(false);
    // The next HEARTBEAT (every 5 s here) brings the re-announce.
    await cl.run(5_000);
    expect(cl.confirmed()).toBe(true);
    expect(cl.controls.every((c) => c.shutdowns === 0)).toBe(true);
  });

  it('an edge drops the orders of a leader older than the newest it has heard', async () => {
    const cl = (cluster = new Cluster(4, config(mulberry32(4), 1), 2, 1));
    const [a, b] = cl.instances as [Instance, Instance];
    cl.elect(a);
    await a.dialect.ready;
    const c = cl.controls[0] as Control;
    c.connect(b);
    await cl.settle();
    const id = c.conn?.id ?? '';
    const sent = c.sock?.sent.length ?? 0;
    // An order with the current token goes out; once b (token 2) has said hello, token 1's do not.
    cl.broker.publish(edgeTopic('i1'), encodeLink({ k: 'send', t: 1, c: id, f: encodeMaster.shutdown({ reason: 'old', shards: [[0, 0]] }) }));
    expect(c.sock?.sent.length).toBe(sent + 1);
    await cl.takeover(b);
    const after = c.sock?.sent.length ?? 0;
    cl.broker.publish(edgeTopic('i1'), encodeLink({ k: 'send', t: 1, c: id, f: encodeMaster.shutdown({ reason: 'stale', shards: [[0, 0]] }) }));
    cl.broker.publish(edgeTopic('i1'), encodeLink({ k: 'close', t: 1, c: id, code: 4001, reason: 'stale' }));
    expect(c.sock?.sent.length).toBe(after);
    expect(c.sock?.closed).toBeUndefined();
  });

  it('what a CONTROL sent while no leader was there is replayed to the new one: IDENTIFY_REQUESTs get their grant, a HEARTBEAT its ACK, a FATAL halts', async () => {
    const cl = (cluster = new Cluster(5, config(mulberry32(5), 2), 2, 2));
    const [a, b] = cl.instances as [Instance, Instance];
    await cl.start(a, () => b);
    expect(cl.confirmed()).toBe(true);
    const [c0, c1] = cl.controls as [Control, Control];
    const shard = Math.min(...c0.served);
    // The leader dies; in the gap c0 asks for an identify slot, and c1 hits a FATAL.
    await cl.kill(a);
    c0.send(Op.IDENTIFY_REQUEST, { shard_id: shard });
    c0.send(Op.HEARTBEAT, { seq: 4242 });
    cl.clock.advance(5_000);
    await cl.takeover(b);
    expect(c0.sock?.json()).toContainEqual({ o: Op.IDENTIFY_GRANT, d: { shard_id: shard } });
    // The HEARTBEAT sent in the gap is ACKed at the takeover: the CONTROL's fence clock restarts.
    expect(c0.sock?.json()).toContainEqual({ o: Op.ACK, d: { seq: 4242 } });
    c1.drop();
    expect(b.dialect.state.phase).not.toBe('halted');
    // Same for a FATAL, on the next takeover.
    const c1b = new Control('late', cl);
    cl.controls.push(c1b);
    c1b.connect(b);
    await cl.settle();
    b.leadership.depose();
    c1b.send(Op.FATAL, { code: 4014, message: 'Disallowed intents' });
    b.leadership.elect(cl.store.issue());
    await b.dialect.ready;
    await cl.settle();
    expect(b.dialect.state.phase).toBe('halted');
    expect(await cl.store.get(STORE_NS, 'fleet')).toMatchObject({ halted: true });
  });

  it('a follower asks the leader: the admin API answers the same on every instance; 503 NOT_LEADER while nobody leads', async () => {
    const cl = (cluster = new Cluster(3, config(mulberry32(3), 2), 2, 2));
    const [a, b] = cl.instances as [Instance, Instance];
    await cl.start(a, () => cl.pick(cl.instances));
    const route = (inst: Instance, url: string) => {
      const r = inst.dialect.routes().find((x) => x.url === url) ?? cl.fail(url);
      return (params: Record<string, string> = {}, body: unknown = undefined) => Promise.resolve(r.handler({ params, query: {}, body, ip: '127.0.0.1', headers: {} }));
    };
    for (const url of ['/api/v1/sharding', '/api/v1/sharding/shards']) {
      expect(await route(b, url)()).toEqual(await route(a, url)());
    }
    expect(await route(b, '/api/v1/sharding/controls/:name')({ name: 'ctl1' })).toEqual(await route(a, '/api/v1/sharding/controls/:name')({ name: 'ctl1' }));
    expect((await route(b, '/api/v1/sharding/controls/:name')({ name: 'nobody' })).status).toBe(404);
    expect(b.dialect.summary()).toMatchObject({ leader: false });
    // An action asked on the follower runs on the leader.
    expect(await route(b, '/api/v1/sharding/halt')({}, {})).toMatchObject({ body: { halted: true } });
    expect(a.dialect.state.phase).toBe('halted');
    // Nobody leads: the question times out into 503 NOT_LEADER.
    a.leadership.depose();
    const pending = route(b, '/api/v1/sharding/shards')();
    cl.clock.advance(5_000);
    expect(await pending).toMatchObject({ status: 503, body: { error: 'NOT_LEADER' } });
  });
});
