import type { IncomingMessage } from 'node:http';
import { Counter, Gauge } from 'prom-client';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpRoute } from '../../core/dialect.js';
import { assertNever, DialectRuntime, timerEvent } from '../../core/runtime.js';
import { BatchedHistogram } from '../../core/batched-histogram.js';
import { CloseCode } from '../../common/errors.js';
import { busCloseCodes, closeCodeFor, DisconnectReason, encode } from '../../protocols/bus/messages.js';
import { gatherRows, instanceHeaders } from '../../cluster/admin-view.js';
import { ClusterLink } from '../../cluster/link.js';
import type { ClusterMsg } from './world-state.js';
import { LINK } from './cluster-wire.js';
import { initialWorld, remoteCount, step, timerId, worldSummary, type BusEffect, type BusWorld, type ClaimOutcome, type BusWorldConfig, type TimerKey, type WorldEvent } from './world.js';

export interface BusDialectConfig {
  path: string;
  token: string;
  heartbeatInterval: number;
  maxMessageBytes: number;
  requestTimeout: number;
  identifyTimeout: number;
  maxBufferedBytes: number;
  /** EVENTs a service may send per second (0: no limit); bursts of 2 s. */
  maxEventsPerSecond?: number;
  /** EVENT bytes a service may send per second (0: no limit); bursts of 2 s, at least one largest frame. */
  maxEventBytesPerSecond?: number;
  /** Largest frame before IDENTIFY succeeds (default DEFAULT_PRE_AUTH_MAX_BYTES). */
  preAuthMaxBytes?: number;
}

/** The gather question (cluster mode) for one instance's bus services, as the admin list shows them. */
export const SERVICES_KIND = 'bus.services';

/** A service as `GET /api/v1/bus/services` shows it. */
interface ServiceRow {
  id: string;
  name: string | null;
  groups: string[];
  remoteAddress: string;
  connectedAt: string;
  lastSeen: string;
}

export interface BusDialectDeps {
  secretEquals: (a: string, b: string) => boolean;
}

/**
 * One bus socket's handler: it only hands what happens on the socket to the runtime
 * (one object per socket, no closures).
 */
class Socket implements ConnectionHandler {
  constructor(
    readonly bus: BusDialect,
    readonly conn: Connection,
    readonly headerToken: string | undefined,
  ) {}

  onMessage(data: Buffer, binary: boolean): void {
    this.bus._frame(this, data, binary);
  }

  onClose(): void {
    this.bus._release(this);
  }
}

/**
 * The bus dialect's glue on the core runtime: the pure world (world.ts) routes EVENTs,
 * keeps groups and pending requests; every frame for another connection goes out through
 * the Broker (`deliver`), and services join their groups there. What the world tells the
 * bus on other instances (world-cluster.ts) goes out on Broker topics, and comes in from
 * them, with the Broker's peer reports, as events. With one process nobody else listens.
 */
export class BusDialect implements Dialect {
  readonly name = 'bus';
  readonly path: string;
  readonly closeCodes = busCloseCodes;
  readonly maxBufferedBytes: number;
  readonly preAuthMaxBytes: number;

  readonly #ctx: DialectContext;
  readonly #world: BusWorldConfig;
  readonly #rt: DialectRuntime<BusWorld, WorldEvent, TimerKey, BusEffect, string | Buffer>;
  /** The connection being released (its close is fed after the runtime has forgotten it). */
  #releasing: Connection | undefined;
  /** Undoes the topic subscriptions, the peer listener and the admin list answerer. */
  readonly #link: ClusterLink<ClusterMsg>;
  readonly #unhook: Array<() => void> = [];
  /** True while a frame is being handled (a receiver cut meanwhile was cut by that frame's delivery). */
  #busy = false;
  readonly #m: {
    routed: Counter<'target'>;
    noRoute: Counter;
    disconnects: Counter<'reason'>;
    requestDuration: BatchedHistogram<'outcome'>;
    repliesDropped: Counter;
    rateLimited: Counter;
  };

  constructor(cfg: BusDialectConfig, ctx: DialectContext, deps: BusDialectDeps) {
    this.#ctx = ctx;
    this.path = cfg.path;
    this.maxBufferedBytes = cfg.maxBufferedBytes;
    this.preAuthMaxBytes = cfg.preAuthMaxBytes ?? DEFAULT_PRE_AUTH_MAX_BYTES;
    const events = cfg.maxEventsPerSecond ?? 0;
    const bytes = cfg.maxEventBytesPerSecond ?? 0;
    this.#world = {
      machine: {
        token: cfg.token,
        maxMessageBytes: cfg.maxMessageBytes,
        preAuthMaxBytes: this.preAuthMaxBytes,
        heartbeatInterval: cfg.heartbeatInterval,
        secretEquals: deps.secretEquals,
      },
      heartbeatInterval: cfg.heartbeatInterval,
      requestTimeout: cfg.requestTimeout,
      identifyTimeout: cfg.identifyTimeout,
      maxBufferedBytes: cfg.maxBufferedBytes,
      limited: events > 0 || bytes > 0,
      eventRate: { perSecond: events, burst: 2 * events },
      byteRate: { perSecond: bytes, burst: Math.max(2 * bytes, cfg.maxMessageBytes) },
      lastSeen: (id) => this.#conn(id)?.lastSeen ?? 0,
      // Cluster mode: names are claimed in Redis before IDENTIFY succeeds (world-names.ts).
      claimNames: ctx.broker.names !== undefined,
    };
    const world = this.#world;
    this.#rt = new DialectRuntime({
      name: 'bus',
      world: {
        step: (state, ev) => step(state, ev, world),
        timerEvent,
        timerId,
        effect: (e) => this.#effect(e),
      },
      initial: initialWorld(),
      scheduler: ctx.scheduler,
      logger: ctx.logger,
      broker: { broker: ctx.broker, scope: 'bus' },
      // Warn lines about a service over its rate, capped per service.
      peerLogRate: { perSecond: 0.1, burst: 1 },
    });
    const state = this.#rt.state;
    const link = new ClusterLink(ctx.broker, LINK, {
      remote: (from, msg) => this.#rt.feed({ type: 'remote', now: ctx.scheduler.now(), from, msg }),
      peer: (instance, up) => this.#rt.feed({ type: 'peer', now: ctx.scheduler.now(), instance, up }),
    });
    this.#link = link;
    this.#unhook.push(
      () => link.stop(),
      // The admin list of every instance (cluster mode): each instance answers with its own services.
      ctx.broker.answer(SERVICES_KIND, () => this.#localServices()),
    );
    const registers = [ctx.registry];
    new Gauge({
      name: 'muster_bus_services',
      help: 'Identified bus services on this instance',
      registers,
      collect() {
        this.set(state.byId.size - remoteCount(state));
      },
    });
    this.#m = {
      // EVENTs are counted into plain numbers (the world's `routed`) and added to this
      // counter when it is read: a prom-client inc() with labels hashes and validates
      // them on every call.
      routed: new Counter({
        name: 'muster_bus_events_total',
        help: 'Bus EVENTs routed, by intent',
        labelNames: ['target'],
        registers,
        collect: () => this.#flushRouted(),
      }),
      noRoute: new Counter({ name: 'muster_bus_no_route_total', help: 'Bus EVENTs answered with NO_ROUTE', registers }),
      disconnects: new Counter({ name: 'muster_bus_disconnects_total', help: 'DISCONNECTs sent by the server, by reason', labelNames: ['reason'], registers }),
      // Observed into plain counts, handed to prom-client when the registry is read.
      requestDuration: new BatchedHistogram({
        name: 'muster_bus_request_duration_seconds',
        help: 'Time from an EVENT with expect_reply to its last reply, TIMEOUT or REPLY_END',
        labelNames: ['outcome'],
        buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
        registers,
      }),
      rateLimited: new Counter({
        name: 'muster_bus_rate_limited_total',
        help: 'EVENTs refused with RATE_LIMITED because their sender was over its rate',
        registers,
      }),
      repliesDropped: new Counter({
        name: 'muster_bus_replies_dropped_total',
        help: 'REPLYs that answered no pending request addressed to their sender (not asked, answered already, or too late)',
        registers,
      }),
    };
    new Gauge({
      name: 'muster_bus_groups',
      help: 'Bus groups with at least one member',
      registers,
      collect() {
        this.set(state.groups.size);
      },
    });
  }

  #flushRouted(): void {
    const counts = this.#rt.state.routed;
    for (const t of ['GLOBAL', 'GROUP', 'DIRECT'] as const) {
      if (counts[t] > 0) this.#m.routed.inc({ target: t }, counts[t]);
      counts[t] = 0;
    }
  }

  /** Live counts, for leak checks and `muster status`. */
  summary(): { services: number; connections: number; groups: number; pendingRequests: number } {
    return worldSummary(this.#rt.state);
  }

  /** Whether a service (by id or name) is known here: connected here, or on another instance (cluster mode). */
  knows(service: string): boolean {
    const w = this.#rt.state;
    return w.byId.has(service) || w.names.has(service);
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    if (typeof secrets.token === 'string') this.#world.machine = { ...this.#world.machine, token: secrets.token };
  }

  accept(conn: Connection, req: IncomingMessage): ConnectionHandler {
    const socket = new Socket(this, conn, headerToken(req));
    // On the Broker only once it has identified (GLOBAL reaches identified services).
    this.#rt.attach(conn, false);
    this.#rt.feed({ type: 'open', now: this.#ctx.scheduler.now(), conn: conn.id, headerToken: socket.headerToken });
    conn.onSlowConsumer = this.#onSlowConsumer;
    return socket;
  }

  /** One function for every connection (not a closure per socket). */
  readonly #onSlowConsumer = (conn: Connection): void => {
    this.#rt.feed({ type: 'slow', now: this.#ctx.scheduler.now(), conn: conn.id, buffered: conn.bufferedAmount, during: this.#busy });
  };

  /**
   * A connection here by id: the runtime holds them (the bus attaches each socket it
   * accepts, and only sockets), so no second map per connection is kept here.
   */
  #conn(id: string): Connection | undefined {
    const r = this.#releasing;
    if (r !== undefined && r.id === id) return r;
    return this.#rt.connection(id) as Connection | undefined;
  }

  /** @internal A frame from a service's socket (Socket.onMessage). */
  _frame(socket: Socket, data: Buffer, binary: boolean): void {
    const busy = this.#busy;
    this.#busy = true;
    try {
      this.#rt.feed({ type: 'frame', now: this.#ctx.scheduler.now(), conn: socket.conn.id, data, binary, headerToken: socket.headerToken });
    } finally {
      this.#busy = busy;
    }
  }

  /** @internal A service's socket closed (Socket.onClose). */
  _release(socket: Socket): void {
    const id = socket.conn.id;
    this.#rt.detach(id);
    this.#releasing = socket.conn;
    try {
      this.#rt.feed({ type: 'closed', now: this.#ctx.scheduler.now(), conn: id });
    } finally {
      this.#releasing = undefined;
    }
  }

  kick(conn: Connection): void {
    if (this.#rt.state.services.has(conn.id)) this.#rt.feed({ type: 'kick', now: this.#ctx.scheduler.now(), conn: conn.id });
    else conn.close(closeCodeFor.KICKED, DisconnectReason.KICKED);
  }

  goodbye(conn: Connection): void {
    if (this.#rt.state.services.has(conn.id)) this.#rt.feed({ type: 'goodbye', now: this.#ctx.scheduler.now(), conn: conn.id });
    else conn.close(CloseCode.GOING_AWAY, DisconnectReason.SHUTTING_DOWN);
  }

  routes(): HttpRoute[] {
    const cluster = this.#ctx.broker.kind !== 'local';
    return [
      {
        method: 'GET',
        url: '/api/v1/bus/services',
        access: 'admin',
        summary: "Identified bus services; in cluster mode, every instance's",
        response: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              name: { type: ['string', 'null'] },
              groups: { type: 'array', items: { type: 'string' } },
              remoteAddress: { type: 'string' },
              connectedAt: { type: 'string', format: 'date-time' },
              lastSeen: { type: 'string', format: 'date-time' },
              instance: { type: 'string', description: 'cluster mode only: the instance the service is connected to' },
            },
          },
        },
        gathered: 'cluster',
        handler: async () => {
          if (!cluster) return { body: this.#localServices() };
          const { rows, instances } = await gatherRows<ServiceRow>(this.#ctx.broker, SERVICES_KIND, null);
          return { body: rows, headers: instanceHeaders(instances) };
        },
      },
      {
        method: 'GET',
        url: '/api/v1/bus/groups',
        access: 'admin',
        summary: 'Bus groups and their members; in cluster mode, one row per group and instance, from every instance',
        response: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              name: { type: 'string' },
              members: { type: 'array', items: { type: 'string' } },
              instance: { type: 'string', description: 'cluster mode only: the instance these members are connected to' },
            },
          },
        },
        handler: () => ({ body: cluster ? this.#groupsByInstance() : this.#groups() }),
      },
    ];
  }

  /** This instance's identified services, in the order they identified. */
  #localServices(): ServiceRow[] {
    return [...this.#rt.state.byId.values()].flatMap((s) => {
      // Replicas of other instances' services have no connection here.
      const conn = this.#conn(s.conn);
      if (!conn) return [];
      return [
        {
          id: s.conn,
          name: s.name ?? null,
          groups: [...(s.groups ?? [])],
          remoteAddress: conn.remoteAddress,
          connectedAt: new Date(conn.connectedAt).toISOString(),
          lastSeen: new Date(conn.lastSeen).toISOString(),
        },
      ];
    });
  }

  /** Every group and its members, by name. */
  #groups(): Array<{ name: string; members: string[] }> {
    return [...this.#rt.state.groups].map(([name, members]) => ({ name, members: [...members] })).sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Cluster mode: the groups split by the instance each member is connected to, from the
   * world's replicas of other instances' services (no instance is asked): by name, then
   * instance id.
   */
  #groupsByInstance(): Array<{ name: string; members: string[]; instance: string }> {
    const w = this.#rt.state;
    const here = this.#ctx.broker.instanceId;
    return this.#groups()
      .flatMap(({ name, members }) => {
        const by = new Map<string, string[]>();
        for (const id of members) {
          const inst = w.byId.get(id)?.instance ?? here;
          by.set(inst, [...(by.get(inst) ?? []), id]);
        }
        return [...by].map(([instance, ids]) => ({ name, members: ids, instance }));
      })
      .sort((a, b) => a.name.localeCompare(b.name) || a.instance.localeCompare(b.instance));
  }

  stop(): void {
    this.#rt.feed({ type: 'shutdown', now: this.#ctx.scheduler.now() });
    for (const off of this.#unhook.splice(0)) off();
  }

  #effect(e: BusEffect): void {
    switch (e.type) {
      case 'disconnect': {
        this.#m.disconnects.inc({ reason: e.reason });
        const conn = this.#conn(e.conn);
        if (!conn) return;
        conn.sendFinal(encode.disconnect(e.reason, e.detail));
        conn.close(closeCodeFor[e.reason], e.reason);
        return;
      }
      case 'identified': {
        const conn = this.#conn(e.conn);
        if (!conn) return;
        conn.markAuthenticated();
        conn.identity = e.identity;
        return;
      }
      case 'why':
        this.#conn(e.conn)?.markWhy(e.why);
        return;
      case 'phase':
        this.#conn(e.conn)?.stateChanged(e.from, e.to);
        return;
      case 'count':
        this.#m[e.metric].inc();
        return;
      case 'observe':
        this.#m.requestDuration.observeOne(e.outcome, e.seconds);
        return;
      case 'cluster':
        this.#link.publish(e.to, e.msg);
        return;
      case 'claim': {
        const { conn, name } = e;
        const answer = (outcome: ClaimOutcome): void => {
          this.#rt.feed({ type: 'claimed', now: this.#ctx.scheduler.now(), conn, name, outcome });
        };
        // (Without claims the world asks none; a claim would simply be granted.)
        const names = this.#ctx.broker.names;
        (names ? names.claim('bus', name, conn) : Promise.resolve(true)).then(
          (ok) => answer(ok ? 'ok' : 'taken'),
          (err: unknown) => {
            this.#ctx.logger.debug({ err, name }, 'bus: a name could not be claimed cluster-wide (Redis unreachable); IDENTIFY refused with UNAVAILABLE');
            answer('unavailable');
          },
        );
        return;
      }
      case 'release':
        this.#ctx.broker.names?.release('bus', e.name, e.conn);
        return;
      default:
        assertNever(e, 'bus effect');
    }
  }
}

function headerToken(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  return h.startsWith('Bearer ') ? h.slice(7) : h;
}
