import pino from 'pino';
import { Registry } from 'prom-client';
import { LocalBroker } from '../../src/cluster/broker.js';
import { ManualClock } from '../../src/core/clock.js';
import { Connection } from '../../src/core/connection.js';
import type { ConnectionHandler } from '../../src/core/dialect.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { ShardingDialect, type ShardingDialectConfig } from '../../src/dialects/sharding/dialect.js';
import { Op } from '../../src/protocols/sharding/messages.js';
import { expand, toRanges, type Range } from '../../src/protocols/sharding/ranges.js';
import { FakeSocket } from './fake-socket.js';
import { FencedMemoryStore, HandLeadership } from './leadership.js';
import { dialectConfig } from './sharding-config.js';
import { mulberry32 } from './random.js';

/**
 * Cluster mode in one process, for tests: several sharding dialects (one per "instance")
 * on one LocalBroker and one store with the lease's fencing, a hand-driven leadership per
 * instance, and scripted CONTROLs over fake sockets that check, after every step, that
 * no shard is served by two of them.
 */

export const T0 = 1_700_000_000_000;

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
};

interface Frame {
  o: number;
  d: Record<string, unknown> | null;
}

/** The in-process broker, able to lose the next message that matches (a pub/sub message lost in flight). */
export class LossyBroker extends LocalBroker {
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

export class Instance {
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
export class Control {
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

export class Cluster {
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

  /** Elects `leader`, connects every CONTROL to the instance `on` names, and runs until every shard is confirmed (10 s at most). */
  async start(leader: Instance, on: () => Instance): Promise<void> {
    this.elect(leader);
    await leader.dialect.ready;
    for (const c of this.controls) c.connect(on());
    await this.settle();
    for (let i = 0; i < 10 && !this.confirmed(); i++) await this.run(1_000);
  }

  /** The instance dies: deposed and stopped, nothing more comes from it. */
  async kill(inst: Instance): Promise<void> {
    inst.leadership.depose();
    inst.dead = true;
    await inst.dialect.stop();
  }

  /** `inst` is elected, is ready, and the rest settles. */
  async takeover(inst: Instance): Promise<void> {
    this.elect(inst);
    await inst.dialect.ready;
    await this.settle();
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

export function config(rand: () => number, controls: number): ShardingDialectConfig {
  const shardCount = 4 + Math.floor(rand() * 28);
  const redundancy = controls >= 3 && rand() < 0.5 ? 1 : 0;
  const startup = rand() < 0.5 ? 'sequential' : 'parallel';
  return dialectConfig({ shardCount, expectedControls: controls, redundancy, startup });
}

export async function startCluster(seed: number): Promise<Cluster> {
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
