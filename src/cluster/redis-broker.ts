import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ioredis } from '../store/redis.js';
import type { Logger } from 'pino';
import { Presence } from './redis-presence.js';
import { handOut, Outbox, pack, unpackBatch, type Header, type Out, type Sub } from './redis-wire.js';
import { LocalBroker, type Broker, type BrokerHandler, type DeliveryEndpoint, type DeliveryTarget, type NameClaims, type PeerHandler } from './broker.js';
import { Gatherer, type Answerer, type CloseOrder, type CloseResult, type Closer, type Gathered, type GatherOptions } from './gather.js';

/**
 * The Broker of cluster mode: several instances behind one Redis.
 *
 * - Local first. Every delivery to a connection on this instance goes to it directly (an
 *   inner LocalBroker keeps this instance's connections and groups); only what is meant
 *   for other instances goes over Redis.
 * - Channels (all under `prefix`): `inst:<id>` per instance, for deliveries to one
 *   connection there; `grp:<scope>:<group>` per group and `all:<scope>` per scope, which
 *   an instance subscribes to while it has members (connections); `topic:<name>` per
 *   topic. Messages are a JSON header line and the frame's bytes, as they were; each run
 *   of consecutive messages to one channel in an event-loop turn goes as one `PUBLISH`
 *   (a batch, redis-wire.ts).
 * - Directory: a hash `dir` (connection id -> instance) for deliveries to a connection
 *   whose instance the sender does not know, and a set `conns:<id>` per instance.
 *   Connection ids are UUIDs, unique cluster-wide.
 * - Presence: `alive:<id>` with a TTL (`presenceTtl`) refreshed every third of it, and the
 *   set `instances`. An instance whose key has expired is gone: the next instance to
 *   notice removes its directory entries (one script, so a re-registering instance is
 *   never half removed) and every instance reports it to `onPeer` listeners.
 * - Order: one publishing connection per instance, and deliveries that need a directory
 *   look-up hold back the ones behind them, so what one instance sends arrives in order.
 * - Redis down: local deliveries go on; remote ones are refused and counted
 *   (`stats.refused`), `ready` is false. ioredis reconnects; then the broker subscribes
 *   again, re-registers its connections and reports every live peer `up` again.
 * - Gathers and closes (gather.ts) are topics like any other; the peers asked are the
 *   instances seen alive. Redis down: only this instance answers, the rest are `missing`.
 */
export interface RedisBrokerOptions {
  readonly url: string;
  /** Key and channel prefix (default `muster:`). */
  readonly prefix?: string;
  /** How long an instance that stopped heartbeating is still believed alive, ms (default 15000). */
  readonly presenceTtl?: number;
  readonly instanceId?: string;
  readonly logger?: Logger;
  /** How long a gather waits for the other instances, ms (default GATHER_TIMEOUT_MS). */
  readonly gatherTimeout?: number;
}

export interface RedisBrokerStats {
  /** Messages published to Redis. */
  published: number;
  /** `PUBLISH` commands sent (a batch carries several messages). */
  publishes: number;
  /** Messages from other instances handled here. */
  received: number;
  /** Remote deliveries not sent because Redis was unreachable. */
  refused: number;
  /** Deliveries to a connection found on no instance. */
  unroutable: number;
}

const WHERE_CACHE = 10_000;

export class RedisBroker implements Broker {
  readonly kind = 'redis';
  readonly instanceId: string;
  readonly stats: RedisBrokerStats = { published: 0, publishes: 0, received: 0, refused: 0, unroutable: 0 };
  readonly #p: string;
  readonly #ttl: number;
  readonly #log: Logger | undefined;
  readonly #local: LocalBroker;
  readonly #cmd: Redis;
  readonly #sub: Redis;
  readonly #presence: Presence;
  readonly #gatherer: Gatherer;
  /** Channels this instance wants to hear, and what each carries. */
  readonly #channels = new Map<string, Sub>();
  readonly #peers = new Set<string>();
  readonly #peerHandlers = new Set<PeerHandler>();
  readonly #readyHandlers = new Set<(ready: boolean) => void>();
  /** Where remote connections live, as looked up (a connection id is never reused). */
  readonly #where = new Map<string, string>();
  readonly #queue: Out[] = [];
  /** This turn's publishes, sent as batches once its I/O is handled. */
  readonly #outbox = new Outbox((channel, payload, n) => this.#flush(channel, payload, n));
  /** Subscribe/unsubscribe commands not yet answered. */
  readonly #subscribing = new Set<Promise<unknown>>();
  /** Waiting for the outbound queue to empty. */
  #drained: Array<() => void> = [];
  #lookingUp = false;
  #started = false;
  #joined = false;
  #joining: Promise<void> | undefined;
  #closed = false;
  #beat: NodeJS.Timeout | undefined;
  /** The header of every topic message this instance publishes (the same bytes each time). */
  #topicHead: Buffer | undefined;

  constructor(opts: RedisBrokerOptions) {
    this.instanceId = opts.instanceId ?? randomUUID();
    this.#p = opts.prefix ?? 'muster:';
    this.#ttl = Math.max(30, opts.presenceTtl ?? 15_000);
    this.#log = opts.logger;
    this.#local = new LocalBroker(this.instanceId);
    const base = {
      lazyConnect: true,
      enableOfflineQueue: false,
      autoResubscribe: false,
      maxRetriesPerRequest: 1,
      retryStrategy: (times: number) => Math.min(50 * times, 1000),
    };
    const { Redis: Client } = ioredis();
    this.#cmd = new Client(opts.url, { ...base, connectionName: `muster-${this.instanceId}-cmd` });
    this.#sub = new Client(opts.url, { ...base, connectionName: `muster-${this.instanceId}-sub` });
    for (const r of [this.#cmd, this.#sub]) {
      r.on('ready', () => void this.#join());
      r.on('close', () => this.#lost());
      // Reconnection errors: `#lost` logs the outage once.
      r.on('error', () => {});
    }
    this.#presence = new Presence(this.#cmd, this.instanceId, this.#p, this.#ttl, () => this.#local.connectionIds());
    this.#sub.on('messageBuffer', (channel: Buffer, message: Buffer) => this.#onMessage(channel.toString(), message));
    this.#want(this.#chan('inst', this.instanceId), { kind: 'inst' });
    const link = { instanceId: this.instanceId, ready: () => this.ready, peers: () => this.peers, publish: this.publish.bind(this), subscribe: this.subscribe.bind(this) };
    this.#gatherer = new Gatherer(link, (id, order) => this.#local.closeLocal(id, order), undefined, opts.gatherTimeout);
  }

  /** Names unique cluster-wide (claims in Redis, redis-presence.ts); refused while not joined. */
  readonly names: NameClaims = {
    claim: (scope, name, conn) => (this.ready ? this.#presence.claim(`${scope}:${name}`, conn) : Promise.reject(new Error('not joined over Redis'))),
    release: (scope, name, conn) => {
      if (this.#cmd.status === 'ready') this.#presence.release(`${scope}:${name}`, conn);
    },
  };

  get ready(): boolean {
    return this.#joined && this.#cmd.status === 'ready' && this.#sub.status === 'ready';
  }

  /** Other instances seen alive. */
  get peers(): readonly string[] {
    return [...this.#peers];
  }

  async start(): Promise<void> {
    if (this.#started || this.#closed) return;
    this.#started = true;
    const every = Math.max(10, Math.floor(this.#ttl / 3));
    this.#beat = setInterval(() => void this.#heartbeat(), every);
    this.#beat.unref();
    await Promise.all([this.#cmd.connect(), this.#sub.connect()]).catch((err: unknown) => {
      this.#log?.warn({ err }, 'cluster: Redis unreachable at start; retrying');
    });
    await this.#join();
  }

  /** Called when `ready` changes (joined over Redis, or lost it). */
  onReady(handler: (ready: boolean) => void): () => void {
    this.#readyHandlers.add(handler);
    return () => this.#readyHandlers.delete(handler);
  }

  onPeer(handler: PeerHandler): () => void {
    this.#peerHandlers.add(handler);
    return () => this.#peerHandlers.delete(handler);
  }

  publish(topic: string, message: Buffer): void {
    this.#local.publish(topic, message);
    const head = (this.#topicHead ??= Buffer.from(`${JSON.stringify({ o: this.instanceId })}\n`));
    this.#send({ channel: this.#chan('topic', topic), payload: Buffer.concat([head, message], head.length + message.length) });
  }

  subscribe(topic: string, handler: BrokerHandler): () => void {
    const off = this.#local.subscribe(topic, handler);
    const channel = this.#chan('topic', topic);
    this.#want(channel, { kind: 'topic', topic });
    return () => {
      off();
      if (!this.#local.hasSubscribers(topic)) this.#unwant(channel);
    };
  }

  attach(scope: string, conn: DeliveryEndpoint): void {
    this.#local.attach(scope, conn);
    this.#want(this.#chan('all', scope), { kind: 'all', scope });
    if (this.#cmd.status === 'ready') this.#presence.add(conn.id);
  }

  detach(scope: string, connId: string): void {
    if (!this.#local.has(scope, connId)) {
      this.#local.detach(scope, connId);
      return;
    }
    const groups = this.#local.groupsOf(scope, connId);
    this.#local.detach(scope, connId);
    for (const g of groups) if (this.#local.groupSize(scope, g) === 0) this.#unwant(this.#chan('grp', scope, g));
    if (this.#local.attached(scope) === 0) this.#unwant(this.#chan('all', scope));
    if (this.#cmd.status === 'ready') this.#presence.remove(connId);
  }

  join(scope: string, group: string, connId: string): void {
    this.#local.join(scope, group, connId);
    this.#want(this.#chan('grp', scope, group), { kind: 'grp', scope, group });
  }

  leave(scope: string, group: string, connId: string): void {
    this.#local.leave(scope, group, connId);
    if (this.#local.groupSize(scope, group) === 0) this.#unwant(this.#chan('grp', scope, group));
  }

  deliver(scope: string, target: DeliveryTarget, frame: string | Buffer): number {
    const n = this.#local.deliver(scope, target, frame);
    const b = typeof frame === 'string' ? undefined : 1;
    switch (target.to) {
      case 'conn':
        if (n === 0 && !this.#local.has(scope, target.conn)) {
          this.#send({ channel: undefined, conn: target.conn, payload: pack({ o: this.instanceId, s: scope, c: target.conn, ...(b ? { b } : {}) }, frame) });
        }
        return n;
      case 'requester': {
        const { instance, conn } = target.requester;
        if (instance !== this.instanceId) this.#send({ channel: this.#chan('inst', instance), payload: pack({ o: this.instanceId, s: scope, c: conn, ...(b ? { b } : {}) }, frame) });
        return n;
      }
      case 'group':
        if (target.local !== true) {
          const h: Header = { o: this.instanceId, ...(target.except !== undefined ? { x: target.except } : {}), ...(b ? { b } : {}) };
          this.#send({ channel: this.#chan('grp', scope, target.group), payload: pack(h, frame) });
        }
        return n;
      case 'all':
        if (target.local !== true) {
          const h: Header = { o: this.instanceId, ...(target.except !== undefined ? { x: target.except } : {}), ...(b ? { b } : {}) };
          this.#send({ channel: this.#chan('all', scope), payload: pack(h, frame) });
        }
        return n;
      default: {
        const never: never = target;
        throw new Error(`unknown delivery target ${JSON.stringify(never)}`);
      }
    }
  }

  gather(kind: string, question: unknown, opts?: GatherOptions): Promise<Gathered> {
    return this.#gatherer.gather(kind, question, opts);
  }
  answer(kind: string, handler: Answerer): () => void {
    return this.#gatherer.answer(kind, handler);
  }
  closeConn(connId: string, order: CloseOrder): Promise<CloseResult> {
    return this.#gatherer.close(connId, order);
  }
  setCloser(closer: Closer): void {
    this.#gatherer.setCloser(closer);
  }

  /** Connections attached in `scope` here (for leak checks). */
  attached(scope: string): number {
    return this.#local.attached(scope);
  }

  /** Leaves the cluster: presence and directory entries removed, connections closed. */
  async close(): Promise<void> {
    if (this.#closed) return;
    // What was published before the close goes out first, as it would have at the turn's end.
    this.#outbox.flush();
    this.#closed = true;
    this.#joined = false;
    clearInterval(this.#beat);
    this.#gatherer.stop();
    if (this.#cmd.status === 'ready') {
      try {
        await this.#presence.leave();
      } catch {
        // Redis went away meanwhile: the entries expire with the presence key.
      }
    }
    await Promise.all([this.#cmd.quit().catch(() => {}), this.#sub.quit().catch(() => {})]);
    this.#cmd.disconnect();
    this.#sub.disconnect();
    await this.#local.close();
  }

  /**
   * What a crashed instance does, for tests: stops heartbeating and drops its Redis
   * connections without leaving. Its peers find it gone once its presence expires.
   */
  halt(): void {
    this.#closed = true;
    this.#joined = false;
    clearInterval(this.#beat);
    this.#cmd.disconnect();
    this.#sub.disconnect();
  }

  #chan(kind: Sub['kind'], ...parts: string[]): string {
    return this.#p + [kind, ...parts].join(':');
  }

  /** Resolves once every subscription asked for so far is in place (or failed). */
  async subscribed(): Promise<void> {
    while (this.#subscribing.size > 0) await Promise.all([...this.#subscribing]);
  }

  /** Resolves once everything sent so far has been handed to Redis and Redis has answered. */
  async flushed(): Promise<void> {
    if (this.#queue.length > 0) await new Promise<void>((resolve) => this.#drained.push(resolve));
    await this.#outbox.whenFlushed();
    if (this.#cmd.status === 'ready') await this.#cmd.ping().catch(() => {});
  }

  #want(channel: string, sub: Sub): void {
    if (this.#channels.has(channel)) return;
    this.#channels.set(channel, sub);
    if (this.#sub.status === 'ready') this.#track(this.#sub.subscribe(channel));
  }

  #unwant(channel: string): void {
    if (!this.#channels.delete(channel)) return;
    if (this.#sub.status === 'ready') this.#track(this.#sub.unsubscribe(channel));
  }

  #track(p: Promise<unknown>): void {
    const t = p.catch(() => {});
    this.#subscribing.add(t);
    void t.then(() => this.#subscribing.delete(t));
  }

  /** Both connections are up: subscribe, register, report peers. Once at a time. */
  #join(): Promise<void> {
    if (!this.#started || this.#closed || this.#cmd.status !== 'ready' || this.#sub.status !== 'ready') return this.#joining ?? Promise.resolve();
    this.#joining ??= (async () => {
      try {
        const channels = [...this.#channels.keys()];
        if (channels.length > 0) {
          const p = this.#sub.subscribe(...channels);
          this.#track(p);
          await p;
        }
        await this.#presence.register();
        const was = this.#joined;
        this.#joined = true;
        await this.#scan(true);
        if (!was) {
          this.#log?.info({ instance: this.instanceId }, 'cluster: joined over Redis');
          for (const h of [...this.#readyHandlers]) h(true);
        }
      } catch (err) {
        this.#log?.warn({ err }, 'cluster: could not join over Redis; retrying');
      } finally {
        this.#joining = undefined;
      }
    })();
    return this.#joining;
  }

  #lost(): void {
    if (!this.#joined) return;
    this.#joined = false;
    this.#log?.warn({ instance: this.instanceId }, 'cluster: lost Redis; remote deliveries refused until it is back');
    for (const h of [...this.#readyHandlers]) h(false);
  }

  async #heartbeat(): Promise<void> {
    if (this.#joining) return;
    // A join that failed with both connections up is not retried by a 'ready' event: here it is.
    if (!this.#joined) return void (await this.#join());
    if (!this.ready) return;
    try {
      await this.#presence.beat();
      await this.#scan(false);
    } catch (err) {
      this.#log?.debug({ err }, 'cluster: heartbeat failed');
    }
  }

  /** Finds peers that came or went; with `all`, reports every live one `up`. */
  async #scan(all: boolean): Promise<void> {
    const live = await this.#presence.live();
    if (this.#closed) return;
    for (const id of [...this.#peers]) {
      if (live.has(id)) continue;
      this.#peers.delete(id);
      for (const [conn, inst] of this.#where) if (inst === id) this.#where.delete(conn);
      this.#log?.info({ instance: id }, 'cluster: peer gone');
      this.#emit(id, false);
    }
    for (const id of live) {
      if (this.#peers.has(id) && !all) continue;
      if (!this.#peers.has(id)) this.#log?.info({ instance: id }, 'cluster: peer up');
      this.#peers.add(id);
      this.#emit(id, true);
    }
  }

  #emit(id: string, up: boolean): void {
    for (const h of [...this.#peerHandlers]) {
      try {
        h(id, up);
      } catch (err) {
        this.#log?.error({ err }, 'cluster: a peer listener failed');
      }
    }
  }

  /** Publishes in order: an item that needs a directory look-up holds back those behind it. */
  #send(o: Out): void {
    if (this.#queue.length === 0 && o.channel !== undefined) return this.#publish(o.channel, o.payload);
    this.#queue.push(o);
    this.#pump();
  }

  #pump(): void {
    while (this.#queue.length > 0) {
      const o = this.#queue[0] as Out;
      if (o.channel === undefined) {
        const conn = o.conn as string;
        const where = this.#where.get(conn);
        if (where === undefined) {
          if (!this.#lookingUp) this.#lookup(conn);
          return;
        }
        o.channel = this.#chan('inst', where);
      }
      this.#queue.shift();
      this.#publish(o.channel, o.payload);
    }
    for (const resolve of this.#drained.splice(0)) resolve();
  }

  #lookup(conn: string): void {
    if (this.#cmd.status !== 'ready') {
      this.#queue.shift();
      this.stats.refused++;
      return this.#pump();
    }
    this.#lookingUp = true;
    this.#presence.lookup(conn).then(
      (inst) => {
        this.#lookingUp = false;
        if (inst === null || inst === this.instanceId) {
          // Nowhere, or here and gone meanwhile.
          this.#queue.shift();
          this.stats.unroutable++;
        } else {
          if (this.#where.size >= WHERE_CACHE) this.#where.delete(this.#where.keys().next().value as string);
          this.#where.set(conn, inst);
        }
        this.#pump();
      },
      () => {
        this.#lookingUp = false;
        this.#queue.shift();
        this.stats.refused++;
        this.#pump();
      },
    );
  }

  #publish(channel: string, payload: Buffer): void {
    if (this.#cmd.status !== 'ready') {
      this.stats.refused++;
      return;
    }
    this.#outbox.add(channel, payload);
  }

  /** One `PUBLISH` of `n` messages (a batch when more than one; redis-wire.ts). */
  #flush(channel: string, payload: Buffer, n: number): void {
    if (this.#cmd.status !== 'ready') {
      this.stats.refused += n;
      return;
    }
    this.stats.published += n;
    this.stats.publishes++;
    this.#cmd.publish(channel, payload).catch(() => {
      this.stats.refused += n;
    });
  }

  #onMessage(channel: string, payload: Buffer): void {
    const sub = this.#channels.get(channel);
    if (!sub) return;
    unpackBatch(payload, (message) => {
      if (handOut(this.#local, this.instanceId, sub, message)) this.stats.received++;
    });
  }
}
