/**
 * The Clusterio dialect's glue on the core runtime. The pure world (world/) holds every
 * link, peer, session, the registry and the forwarding table; this shell feeds it what
 * happens on the sockets and what the async parts find out: token checks (`verify` →
 * `authenticated`), the registry read from the store at start-up (`registryLoaded`),
 * writes settled (the runtime's `settled`), and the slaves' metrics at scrape time (a
 * `scrape` call). Frames for other sockets go through the Broker (`deliver`).
 *
 * In cluster mode (a broker that is not local) the world also talks to the Clusterio
 * worlds on the other instances (world/cluster.ts): its `cluster` messages go out on
 * Broker topics and come back in as `remote` events, the Broker's peer reports as `peer`
 * events, and the records it is told to read again (`reread`) come back as `registryRead`.
 */
import type { IncomingMessage } from 'node:http';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpRoute } from '../../core/dialect.js';
import { assertNever, DialectRuntime } from '../../core/runtime.js';
import { ClusterioClose, clusterioCloseCodes, CloseReason } from '../../protocols/clusterio/messages.js';
import { createMetrics, publishSlaveMetrics, type DialectMetrics, type SlaveFamily } from './metrics.js';
import { ClusterLink } from '../../cluster/link.js';
import type { ClusterMsg } from './world/state.js';
import { LINK } from './cluster-wire.js';
import { clusterioRoutes } from './routes.js';
import { loadRegistry, readRecord, type Read } from './store.js';
import { TokenVerifier } from './token.js';
import { DEFAULT_METRICS_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, type ClusterioDialectConfig } from './types.js';
import { INSTANCES_NS } from './world/registry.js';
import { initialWorld, timerId, worldSummary, type ClusterioEffect, type ClusterioWorld, type SlaveMetrics, type TimerKey, type WorldConfig, type WorldEvent } from './world/state.js';
import { step } from './world/step.js';

export { DEFAULT_METRICS_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, type ClusterioDialectConfig } from './types.js';

/** One socket's handler: it only hands what happens on the socket to the runtime. */
class Socket implements ConnectionHandler {
  constructor(
    readonly dialect: ClusterioDialect,
    readonly conn: Connection,
  ) {}

  onMessage(data: Buffer, isBinary: boolean): void {
    this.dialect._frame(this.conn, isBinary ? undefined : data.toString('utf8'), data.length);
  }

  onClose(): void {
    this.dialect._release(this.conn);
  }
}

export class ClusterioDialect implements Dialect {
  readonly name = 'clusterio';
  readonly path: string;
  readonly closeCodes = clusterioCloseCodes;
  readonly maxBufferedBytes: number;
  readonly preAuthMaxBytes: number;

  readonly #ctx: DialectContext;
  readonly #rt: DialectRuntime<ClusterioWorld, WorldEvent, TimerKey, ClusterioEffect>;
  readonly #conns = new Map<string, Connection>();
  readonly #m: DialectMetrics;
  /** The slaves' metric families published at the last scrape. */
  readonly #families = new Map<string, SlaveFamily>();
  readonly #loading: Promise<void>;
  #authSecret: string;
  /** authSecret's key, imported once per secret. */
  #tokens: TokenVerifier;
  #scrapes = 0;
  /** Only in cluster mode. */
  #link: ClusterLink<ClusterMsg> | undefined;
  readonly #unhook: Array<() => void> = [];

  constructor(cfg: ClusterioDialectConfig, ctx: DialectContext) {
    const full: Required<ClusterioDialectConfig> = {
      requestTimeout: DEFAULT_REQUEST_TIMEOUT,
      metricsTimeout: DEFAULT_METRICS_TIMEOUT,
      handshakeTimeout: 2 * cfg.heartbeatInterval,
      maxBufferedBytes: 4 * 1024 * 1024,
      sessionBufferBytes: 4 * 1024 * 1024,
      preAuthMaxBytes: DEFAULT_PRE_AUTH_MAX_BYTES,
      ...cfg,
    };
    this.#ctx = ctx;
    this.path = cfg.path;
    this.maxBufferedBytes = full.maxBufferedBytes;
    this.preAuthMaxBytes = full.preAuthMaxBytes;
    this.#authSecret = full.authSecret;
    this.#tokens = new TokenVerifier(full.authSecret);
    const world: WorldConfig = {
      machine: { heartbeatInterval: full.heartbeatInterval, preAuthMaxBytes: full.preAuthMaxBytes },
      heartbeatInterval: full.heartbeatInterval,
      handshakeTimeout: full.handshakeTimeout,
      sessionTimeout: full.sessionTimeout,
      requestTimeout: full.requestTimeout,
      metricsTimeout: full.metricsTimeout,
      preAuthMaxBytes: full.preAuthMaxBytes,
      sessionBufferBytes: full.sessionBufferBytes,
      newSessionId: () => crypto.randomUUID(),
      ...(ctx.broker.kind === 'local' ? {} : { cluster: { instance: ctx.broker.instanceId } }),
    };
    this.#rt = new DialectRuntime({
      name: 'clusterio',
      world: {
        step: (state, ev) => step(state, ev, world),
        timerEvent: (key, now) => ({ type: 'timer', now, key, lastSeen: key.kind === 'beat' ? (this.#conns.get(key.conn)?.lastSeen ?? 0) : 0 }),
        timerId,
        effect: (e) => this.#effect(e),
        settledEvent: (id, ok, now) => ({ type: 'settled', now, id, ok }),
      },
      initial: initialWorld(),
      scheduler: ctx.scheduler,
      logger: ctx.logger,
      store: { store: ctx.store, namespace: INSTANCES_NS },
      broker: { broker: ctx.broker, scope: 'clusterio' },
    });
    this.#m = createMetrics(ctx.registry, () => this.#rt.state);
    this.#loading = loadRegistry(ctx.store, ctx.logger).then(
      (r) => void this.#rt.feed({ type: 'registryLoaded', now: ctx.scheduler.now(), slaves: r.slaves, instances: r.instances }),
      (err: unknown) => {
        ctx.logger.error({ err }, 'clusterio: could not read slaves and instances from the store; starting empty');
        this.#rt.feed({ type: 'registryLoaded', now: ctx.scheduler.now(), slaves: [], instances: [] });
      },
    );
    if (world.cluster) this.#joinCluster();
  }

  #joinCluster(): void {
    const now = (): number => this.#ctx.scheduler.now();
    const link = new ClusterLink(this.#ctx.broker, LINK, {
      remote: (from, msg) => {
        if (!this.#rt.stopped) this.#rt.feed({ type: 'remote', now: now(), from, msg });
      },
      peer: (instance, up) => {
        if (!this.#rt.stopped) this.#rt.feed({ type: 'peer', now: now(), instance, up });
      },
    });
    this.#link = link;
    this.#unhook.push(() => link.stop());
  }

  /** Reads the registry (or one record) again, after the start-up read, and feeds what it holds now. */
  #reread(gen: number, ns: string | undefined, key: string | undefined): void {
    const { store, logger, scheduler } = this.#ctx;
    this.#loading
      .then((): Promise<Read> => (ns !== undefined && key !== undefined ? readRecord(store, logger, ns, key) : loadRegistry(store, logger)))
      .then(
        (r) => {
          if (!this.#rt.stopped) this.#rt.feed({ type: 'registryRead', now: scheduler.now(), gen, ns, key, slaves: r.slaves, instances: r.instances });
        },
        (err: unknown) => {
          logger.warn({ err, ns, key }, 'clusterio: could not read the registry again after another instance changed it');
          if (!this.#rt.stopped) this.#rt.feed({ type: 'registryRead', now: scheduler.now(), gen, ns, key, slaves: [], instances: [], failed: true });
        },
      )
      .catch((err: unknown) => logger.error({ err }, 'clusterio: failed on a registry read'));
  }

  #publish(to: string | null, msg: ClusterMsg): void {
    if (this.#rt.stopped) return;
    this.#link?.publish(to, msg);
  }

  /** Live counts, for leak checks and `muster status`. */
  summary(): Record<string, number> {
    return worldSummary(this.#rt.state);
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    if (typeof secrets.authSecret !== 'string' || secrets.authSecret === this.#authSecret) return;
    this.#authSecret = secrets.authSecret;
    this.#tokens = new TokenVerifier(secrets.authSecret);
  }

  accept(conn: Connection, _req: IncomingMessage): ConnectionHandler {
    this.#conns.set(conn.id, conn);
    this.#rt.attach(conn);
    conn.onSlowConsumer = this.#onSlowConsumer;
    this.#rt.feed({ type: 'open', now: this.#ctx.scheduler.now(), conn: conn.id });
    return new Socket(this, conn);
  }

  /** One function for every connection (not a closure per socket). */
  readonly #onSlowConsumer = (conn: Connection): void => {
    this.#ctx.logger.warn({ conn: conn.id, buffered: conn.bufferedAmount }, 'clusterio: slow consumer cut');
    this.#rt.feed({ type: 'slow', now: this.#ctx.scheduler.now(), conn: conn.id });
  };

  /** @internal A frame from a socket (Socket.onMessage); `text` is undefined for a binary frame. */
  _frame(conn: Connection, text: string | undefined, bytes: number): void {
    this.#rt.feed({ type: 'frame', now: this.#ctx.scheduler.now(), conn: conn.id, text, bytes });
  }

  /** @internal A socket closed (Socket.onClose). */
  _release(conn: Connection): void {
    this.#rt.detach(conn.id);
    this.#rt.feed({ type: 'closed', now: this.#ctx.scheduler.now(), conn: conn.id });
    this.#conns.delete(conn.id);
  }

  kick(conn: Connection): void {
    if (this.#rt.state.links.has(conn.id)) this.#rt.feed({ type: 'kick', now: this.#ctx.scheduler.now(), conn: conn.id });
    else conn.close(ClusterioClose.POLICY_VIOLATION, CloseReason.KICKED);
  }

  goodbye(conn: Connection): void {
    if (this.#rt.state.links.has(conn.id)) this.#rt.feed({ type: 'goodbye', now: this.#ctx.scheduler.now(), conn: conn.id });
    else conn.close(ClusterioClose.GOING_AWAY, CloseReason.SHUTDOWN);
  }

  async stop(): Promise<void> {
    await this.#loading;
    for (const off of this.#unhook.splice(0)) off();
    this.#rt.feed({ type: 'shutdown', now: this.#ctx.scheduler.now() });
    for (const name of this.#families.keys()) this.#ctx.registry.removeSingleMetric(name);
    this.#families.clear();
    await this.#rt.stop();
  }

  /** Asks every connected slave for its metrics and publishes them with a slave_id label. */
  async beforeScrape(): Promise<void> {
    const call = `scrape:${++this.#scrapes}`;
    const answer = await this.#rt.call(call, { type: 'scrape', now: this.#ctx.scheduler.now(), call });
    if (answer.status !== 200) return;
    publishSlaveMetrics(this.#ctx.registry, this.#families, answer.body as SlaveMetrics[]);
  }

  routes(): HttpRoute[] {
    return clusterioRoutes({ world: () => this.#rt.state, remoteAddress: (id) => this.#conns.get(id)?.remoteAddress });
  }

  #effect(e: ClusterioEffect): void {
    switch (e.type) {
      case 'shut': {
        const conn = this.#conns.get(e.conn);
        if (!conn || conn.closing) return;
        conn.sendFinal(e.frame);
        conn.close(e.code, e.reason);
        return;
      }
      case 'ping':
        this.#conns.get(e.conn)?.ping();
        return;
      case 'verify': {
        const { conn, attempt } = e;
        const expect = e.role === 'slave' ? ({ aud: 'slave', id: e.id } as const) : ({ aud: 'control' } as const);
        this.#tokens
          .verify(e.token, expect, this.#ctx.scheduler.now())
          .then((ok) => {
            // A socket that is going (whoever closed it) registers nothing.
            if (this.#conns.get(conn)?.closing !== false) return;
            this.#rt.feed({ type: 'authenticated', now: this.#ctx.scheduler.now(), conn, attempt, ok });
          })
          .catch((err: unknown) => this.#ctx.logger.error({ err, conn }, 'clusterio: registration failed'));
        return;
      }
      case 'authenticated':
        this.#conns.get(e.conn)?.markAuthenticated();
        return;
      case 'refused':
        this.#conns.get(e.conn)?.authFailed(e.detail);
        return;
      case 'identity': {
        const conn = this.#conns.get(e.conn);
        if (conn) conn.identity = e.identity;
        return;
      }
      case 'why':
        this.#conns.get(e.conn)?.markWhy(e.why);
        return;
      case 'phase':
        this.#conns.get(e.conn)?.stateChanged(e.from, e.to);
        return;
      case 'count':
        this.#m[e.metric].inc();
        return;
      case 'forwarded':
        this.#m.forwarded.inc({ type: e.requestType });
        return;
      case 'plugin':
        this.#m.pluginEvents.inc({ type: e.label, action: e.action });
        return;
      case 'cluster': {
        const { to, msg } = e;
        // A record written here is announced once it is in the store, so the others read it.
        if (e.afterWrites) void this.#rt.settled().then(() => this.#publish(to, msg));
        else this.#publish(to, msg);
        return;
      }
      case 'reread':
        this.#reread(e.gen, e.ns, e.key);
        return;
      default:
        assertNever(e, 'clusterio effect');
    }
  }
}
