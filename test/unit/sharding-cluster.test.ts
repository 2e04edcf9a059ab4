import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalBroker } from '../../src/cluster/broker.js';
import { ManualClock } from '../../src/core/clock.js';
import { Connection } from '../../src/core/connection.js';
import type { ConnectionHandler } from '../../src/core/dialect.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { ShardingDialect, STORE_NS, type ShardingDialectConfig } from '../../src/dialects/sharding/dialect.js';
import { encodeLink, edgeTopic } from '../../src/dialects/sharding/link.js';
import { encodeMaster, Op } from '../../src/protocols/sharding/messages.js';
import { expand, toRanges, type Range } from '../../src/protocols/sharding/ranges.js';
import { FakeSocket } from '../support/fake-socket.js';
import { FencedMemoryStore, HandLeadership } from '../support/leadership.js';

/**
 * Cluster mode in one process: several sharding dialects (one per "instance") share one
 * LocalBroker and one store with the lease's fencing; a hand-driven leadership stands for
 * the Redis lease. CONTROLs (scripted over fake sockets) connect to any instance. The
 * leader dies (or pauses); another instance is elected after the lease; every shard must
 * be re-confirmed by the new leader within lease + 1 s (P9), and no shard is ever served
 * by two CONTROLs. Seeded: SHARDING_CLUSTER_SEED replays a run; a failure prints its seed.
 */

const T0 = 1_700_000_000_000;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
};

interface Frame {
  o: number;
  d: Record<string, unknown> | null;
}

/** The in-process broker, able to lose the next message that matches (a pub/sub message lost in flight). */
class LossyBroker extends LocalBroker {
  #lose: ((m: Record<string, unknown>) => boolean) | undefined;
  lost = 0;
  loseNext(pred: (m: Record<string, unknown>) => boolean): void {
    this.#lose = pred;
  }
  override publish(topic: string, message: Buffer): void {
    if (this.#lose?.(JSON.parse(message.toString('utf8')) as Record<string, unknown>)) {
      this.#lose = undefined;
      this.lost++;
      return;
    }
    super.publish(topic, message);
  }
}

class Instance {
  readonly leadership = new HandLeadership();
  readonly dialect: ShardingDialect;
  dead = false;
  constructor(
    readonly id: string,
    readonly cluster: Cluster,
  ) {
    const { scheduler, store, broker } = cluster;
    this.dialect = new ShardingDialect(cluster.cfg, { scheduler, store, broker, logger: pino({ level: 'silent' }), registry: new Registry() }, {
      secretEquals: (a, b) => a === b,
      cluster: { leadership: this.leadership, instanceId: id },
    });
  }
}

/** A scripted CONTROL: identifies, reports CONNECTED for what it is given, stops what it is told to. */
class Control {
  readonly served = new Set<number>();
  session: string | undefined;
  sock: FakeSocket | undefined;
  conn: Connection | undefined;
  h: ConnectionHandler | undefined;
  on: Instance | undefined;
  #read = 0;
  #sockets = 0;
  shutdowns = 0;
  constructor(
    readonly name: string,
    readonly cluster: Cluster,
  ) {}

  connect(to: Instance): void {
    const sock = new FakeSocket();
    this.sock = sock;
    this.#read = 0;
    this.on = to;
    this.conn = new Connection(sock, { id: `${this.name}#${++this.#sockets}`, dialect: 'sharding', remoteAddress: '10.0.0.1', scheduler: this.cluster.scheduler, maxBufferedBytes: 1 << 20 });
    this.h = to.dialect.accept(this.conn);
  }

  /** The socket went away under it (its instance died): no close reaches any dialect. */
  drop(): void {
    this.sock = undefined;
    this.conn = undefined;
    this.h = undefined;
    this.on = undefined;
  }

  get live(): boolean {
    return this.sock !== undefined;
  }

  send(o: number, d: unknown): void {
    this.h?.onMessage(Buffer.from(JSON.stringify({ o, d })), false);
  }

  /** Reacts to the frames that came in; returns whether there were any. */
  pump(): boolean {
    const sock = this.sock;
    if (!sock) return false;
    const frames = sock.sent.slice(this.#read).map((s) => JSON.parse(s) as Frame);
    this.#read = sock.sent.length;
    for (const f of frames) this.#react(f);
    if (sock.closed && this.sock === sock) {
      const { code } = sock.closed;
      // Declared dead or halted: it has stopped its shards (the fence) by now.
      if (code === 4001 || code === 4006) this.served.clear();
      this.conn?._closed(code, sock.closed.reason);
      this.h?.onClose(code, sock.closed.reason);
      this.drop();
      return true;
    }
    return frames.length > 0;
  }

  #react(f: Frame): void {
    const d = f.d ?? {};
    const ids = (r: unknown): number[] => expand(r as Range[], this.cluster.cfg.shardCount);
    switch (f.o) {
      case Op.INITIALISE: {
        const claims = toRanges([...this.served].sort((a, b) => a - b));
        this.send(Op.IDENTIFY, { name: this.name, features: ['identify-queue'], ...(this.session ? { session_id: this.session } : {}), ...(claims.length ? { shards: claims } : {}) });
        this.session = d.session_id as string;
        return;
      }
      case Op.IDENTIFIED:
        this.served.clear();
        for (const id of ids(d.shards)) this.served.add(id);
        return;
      case Op.CONNECT:
      case Op.OFFLOAD:
        for (const id of ids(d.shards)) this.served.add(id);
        this.send(Op.CONNECTING, null);
        this.send(Op.CONNECTED, { shards: toRanges([...this.served].sort((a, b) => a - b)) });
        return;
      case Op.SHUTDOWN:
        this.shutdowns++;
        if (d.shards === undefined) this.served.clear();
        else for (const id of ids(d.shards)) this.served.delete(id);
        return;
      default:
        return;
    }
  }
}

class Cluster {
  readonly clock = new ManualClock(T0);
  readonly scheduler = new Scheduler(this.clock, (e) => {
    throw e;
  });
  readonly broker = new LossyBroker();
  readonly store = new FencedMemoryStore({ now: () => this.clock.now() });
  readonly instances: Instance[] = [];
  readonly controls: Control[] = [];
  readonly rand: () => number;

  constructor(
    readonly seed: number,
    readonly cfg: ShardingDialectConfig,
    instances: number,
    controls: number,
  ) {
    this.rand = mulberry32(seed);
    for (let i = 0; i < instances; i++) this.instances.push(new Instance(`i${i}`, this));
    for (let i = 0; i < controls; i++) this.controls.push(new Control(`ctl${i}`, this));
  }

  fail(msg: string): never {
    throw new Error(`sharding cluster test failed: seed=${this.seed} (SHARDING_CLUSTER_SEED=${this.seed}) t=${this.clock.now() - T0}: ${msg}`);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rand() * xs.length)] as T;
  }

  alive(): Instance[] {
    return this.instances.filter((i) => !i.dead);
  }

  leader(): Instance | undefined {
    return this.instances.find((i) => !i.dead && i.dialect.isLeader);
  }

  elect(inst: Instance): void {
    inst.leadership.elect(this.store.issue());
  }

  /** Lets writes, held frames and the CONTROLs' answers run until nothing moves. */
  async settle(): Promise<void> {
    for (let round = 0; round < 50; round++) {
      await flush();
      let moved = false;
      for (const c of this.controls) moved = c.pump() || moved;
      if (!moved) return;
    }
    this.fail('did not settle');
  }

  /** Advances the clock in steps, heartbeating every 5 s, checking the invariants after each step. */
  async run(ms: number, stepMs = 500): Promise<void> {
    for (let t = 0; t < ms; t += stepMs) {
      this.clock.advance(stepMs);
      if ((this.clock.now() - T0) % 5_000 < stepMs) for (const c of this.controls) if (c.live) c.send(Op.HEARTBEAT, null);
      for (const c of this.controls) if (!c.live) c.connect(this.pick(this.alive()));
      await this.settle();
      this.check();
    }
  }

  /** No shard is served by two CONTROLs, ever. */
  check(): void {
    const by = new Map<number, string>();
    for (const c of this.controls) {
      for (const id of c.served) {
        const other = by.get(id);
        if (other !== undefined) this.fail(`shard ${id} served by ${other} and ${c.name}`);
        by.set(id, c.name);
      }
    }
  }

  /** Every shard is owned by the leader's view and served, by the same live CONTROL, and reported CONNECTED. */
  confirmed(): boolean {
    const l = this.leader();
    if (!l) return false;
    const st = l.dialect.state;
    return st.shards.every((sh, id) => {
      if (sh.owner === null || sh.work !== 'connected') return false;
      const rec = st.controls.get(sh.owner);
      const c = this.controls.find((x) => x.name === sh.owner);
      return rec?.conn !== null && rec?.conn === c?.conn?.id && c?.served.has(id) === true;
    });
  }

  async stop(): Promise<void> {
    for (const i of this.instances) await i.dialect.stop();
  }
}

function config(rand: () => number, controls: number): ShardingDialectConfig {
  return {
    path: '/sharding',
    authorization: 'key',
    botToken: 'tok',
    shardCount: 4 + Math.floor(rand() * 28),
    maxConcurrency: 1,
    heartbeatInterval: 30_000,
    heartbeatGrace: 15_000,
    reconnectWindow: 30_000,
    startupDelay: 45_000,
    expectedControls: controls,
    redundancy: controls >= 3 && rand() < 0.5 ? 1 : 0,
    startup: rand() < 0.5 ? 'sequential' : 'parallel',
    connectTimeout: 120_000,
    identifyWindow: 5_000,
    sessionStartLimit: 1000,
    fenceMargin: 5_000,
    identifyTimeout: 10_000,
  };
}

async function startCluster(seed: number): Promise<Cluster> {
  const r = mulberry32(seed ^ 0x5eed);
  const controls = 2 + Math.floor(r() * 4);
  const cl = new Cluster(seed, config(r, controls), 2 + Math.floor(r() * 2), controls);
  cl.elect(cl.pick(cl.instances));
  await cl.leader()?.dialect.ready;
  for (const c of cl.controls) c.connect(cl.pick(cl.instances));
  await cl.settle();
  cl.check();
  // Start-up: every shard served and confirmed.
  for (let i = 0; i < 20 && !cl.confirmed(); i++) await cl.run(1_000);
  if (!cl.confirmed()) cl.fail('the fleet did not start');
  return cl;
}

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
      old.leadership.depose();
      old.dead = true;
      await old.dialect.stop();
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
    cl.elect(b);
    await b.dialect.ready;
    await cl.settle();
    expect(b.dialect.isLeader).toBe(true);
    // a heard b's hello and stepped down on its own.
    expect(a.dialect.isLeader).toBe(false);
    expect(cl.confirmed()).toBe(true);
    expect(cl.controls.map((c) => c.shutdowns)).toEqual([0, 0]);
  });

  it('a leader still believing it leads is fenced: its writes are refused, its orders dropped, and it stops', async () => {
    const cl = (cluster = new Cluster(2, config(mulberry32(2), 2), 2, 2));
    const [a, b] = cl.instances as [Instance, Instance];
    cl.elect(a);
    await a.dialect.ready;
    for (const c of cl.controls) c.connect(b);
    await cl.settle();
    for (let i = 0; i < 10 && !cl.confirmed(); i++) await cl.run(1_000);
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
    cl.elect(a);
    await a.dialect.ready;
    for (const c of cl.controls) c.connect(b);
    await cl.settle();
    for (let i = 0; i < 10 && !cl.confirmed(); i++) await cl.run(1_000);
    expect(cl.confirmed()).toBe(true);
    a.leadership.depose();
    a.dead = true;
    await a.dialect.stop();
    cl.broker.loseNext((m) => m.k === 'announce');
    cl.elect(b);
    await b.dialect.ready;
    await cl.settle();
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
    cl.elect(b);
    await b.dialect.ready;
    await cl.settle();
    const after = c.sock?.sent.length ?? 0;
    cl.broker.publish(edgeTopic('i1'), encodeLink({ k: 'send', t: 1, c: id, f: encodeMaster.shutdown({ reason: 'stale', shards: [[0, 0]] }) }));
    cl.broker.publish(edgeTopic('i1'), encodeLink({ k: 'close', t: 1, c: id, code: 4001, reason: 'stale' }));
    expect(c.sock?.sent.length).toBe(after);
    expect(c.sock?.closed).toBeUndefined();
  });

  it('what a CONTROL sent while no leader was there is replayed to the new one: IDENTIFY_REQUESTs get their grant, a FATAL halts', async () => {
    const cl = (cluster = new Cluster(5, config(mulberry32(5), 2), 2, 2));
    const [a, b] = cl.instances as [Instance, Instance];
    cl.elect(a);
    await a.dialect.ready;
    for (const c of cl.controls) c.connect(b);
    await cl.settle();
    for (let i = 0; i < 10 && !cl.confirmed(); i++) await cl.run(1_000);
    expect(cl.confirmed()).toBe(true);
    const [c0, c1] = cl.controls as [Control, Control];
    const shard = Math.min(...c0.served);
    // The leader dies; in the gap c0 asks for an identify slot, and c1 hits a FATAL.
    a.leadership.depose();
    a.dead = true;
    await a.dialect.stop();
    c0.send(Op.IDENTIFY_REQUEST, { shard_id: shard });
    cl.clock.advance(5_000);
    cl.elect(b);
    await b.dialect.ready;
    await cl.settle();
    expect(c0.sock?.json()).toContainEqual({ o: Op.IDENTIFY_GRANT, d: { shard_id: shard } });
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
    cl.elect(a);
    await a.dialect.ready;
    for (const c of cl.controls) c.connect(cl.pick(cl.instances));
    await cl.settle();
    for (let i = 0; i < 10 && !cl.confirmed(); i++) await cl.run(1_000);
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
