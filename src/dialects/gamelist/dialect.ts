/**
 * The gamelist dialect's glue on the core runtime: the runtime feeds the pure world
 * (world.ts: sockets, registrations, TTL, kept ids, the registration deadline, ping/pong
 * and joins) and runs its effects; this file pings sockets, counts metrics, keeps the
 * public list's snapshot (a read model over the world's listings, list.ts) and turns a
 * join request into a call the world answers. In cluster mode it carries the world's
 * messages to the other instances' gamelists over Broker topics (cluster-wire.ts), and
 * theirs and the Broker's peer reports back in as events.
 */
import { randomInt, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge } from 'prom-client';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpReply, type HttpRequest, type HttpRoute } from '../../core/dialect.js';
import { assertNever, DialectRuntime, timerEvent } from '../../core/runtime.js';
import { JoinFailure, type JoinAnswer } from '../../protocols/gamelist/api.js';
import { GamelistClose, gamelistCloseCodes, UINT32_MAX } from '../../protocols/gamelist/messages.js';
import { ClusterLink } from '../../cluster/link.js';
import type { ClusterMsg } from './world-cluster.js';
import { LINK } from './cluster-wire.js';
import { changed, gamelistRoutes } from './list.js';
import { GAMELIST_MAX_BUFFERED_BYTES, type GamelistDialectConfig, type GamelistDialectDeps, type Hub } from './types.js';
import { initialWorld, step, timerId, worldSummary, type GamelistEffect, type GamelistWorld, type TimerKey, type WorldConfig, type WorldEvent } from './world.js';

export {
  GAMELIST_MAX_BUFFERED_BYTES,
  PUBLIC_RATE_BUCKET,
  SNAPSHOT_MIN_AGE_MS,
  type GamelistDialectConfig,
  type GamelistDialectDeps,
} from './types.js';

export class GamelistDialect implements Dialect {
  readonly name = 'gamelist';
  readonly path: string;
  readonly closeCodes = gamelistCloseCodes;
  readonly maxBufferedBytes = GAMELIST_MAX_BUFFERED_BYTES;
  readonly preAuthMaxBytes: number;

  readonly #hub: Hub;
  readonly #ctx: DialectContext;
  #world: WorldConfig;
  /** Live sockets by id (the world names them). */
  readonly #conns = new Map<string, Connection>();
  readonly #rt: DialectRuntime<GamelistWorld, WorldEvent, TimerKey, GamelistEffect>;
  #calls = 0;
  /** Only in cluster mode. */
  #link: ClusterLink<ClusterMsg> | undefined;
  readonly #unhook: Array<() => void> = [];

  constructor(cfg: GamelistDialectConfig, ctx: DialectContext, deps: GamelistDialectDeps) {
    this.path = cfg.path;
    this.#ctx = ctx;
    this.preAuthMaxBytes = cfg.preAuthMaxBytes ?? DEFAULT_PRE_AUTH_MAX_BYTES;
    this.#world = {
      machine: {
        regTokens: cfg.regTokens,
        maxFailedRegistrations: cfg.maxFailedRegistrations,
        preAuthMaxBytes: this.preAuthMaxBytes,
        secretEquals: deps.secretEquals,
      },
      registrationTtl: cfg.registrationTtl,
      pingInterval: cfg.pingInterval,
      pongTimeout: cfg.pongTimeout,
      joinTimeout: cfg.joinTimeout,
      maxServers: cfg.maxServers,
      maxServersPerIp: cfg.maxServersPerIp,
      newServerId: deps.newServerId ?? randomUUID,
      newConv: () => randomInt(0, UINT32_MAX + 1),
      cluster: ctx.broker.kind !== 'local',
    };
    this.#rt = new DialectRuntime({
      name: 'gamelist',
      world: {
        step: (state, ev) => step(state, ev, this.#world),
        timerEvent,
        timerId,
        effect: (e) => this.#effect(e),
      },
      initial: initialWorld(),
      scheduler: ctx.scheduler,
      logger: ctx.logger,
    });
    if (this.#world.cluster === true) {
      const link = new ClusterLink(ctx.broker, LINK, {
        remote: (from, msg) => {
          if (msg.t === 'join') this.#remoteJoin(from, msg.id, msg.serverId, msg.body);
          else this.#rt.feed({ type: 'remote', now: ctx.scheduler.now(), from, msg });
        },
        peer: (instance, up) => {
          if (!this.#rt.stopped) this.#rt.feed({ type: 'peer', now: ctx.scheduler.now(), instance, up });
        },
      });
      this.#link = link;
      this.#unhook.push(() => link.stop());
    }
    const registers = [ctx.registry];
    this.#hub = {
      cfg,
      listed: this.#rt.state.listed,
      replicas: this.#rt.state.cluster.replicas,
      instanceId: ctx.broker.instanceId,
      connectedAt: (conn) => this.#conns.get(conn)?.connectedAt,
      join: (req) => this.#join(req),
      now: () => ctx.scheduler.now(),
      snap: undefined,
      gone: new Set(),
      dirty: true,
      builds: 0,
      goneVersion: 0,
      clientCache: undefined,
      pageCache: { snap: undefined, goneVersion: 0, pages: new Map() },
      m: {
        servers: new Gauge({ name: 'muster_gamelist_servers', help: 'Game servers on the public list', registers }),
        registrations: new Counter({
          name: 'muster_gamelist_registrations_total',
          help: 'Registrations by result (listed, refreshed, invalid_token, server_limit)',
          labelNames: ['result'],
          registers,
        }),
        joins: new Counter({
          name: 'muster_gamelist_joins_total',
          help: 'Player joins by result (success, rejected, timeout, not_found, wrong_password, bad_request, server_gone, shutting_down)',
          labelNames: ['result'],
          registers,
        }),
        listRequests: new Counter({
          name: 'muster_gamelist_list_requests_total',
          help: 'Public list requests, by route',
          labelNames: ['route'],
          registers,
        }),
        snapshotBuilds: new Counter({ name: 'muster_gamelist_snapshot_builds_total', help: 'Rebuilds of the public list snapshot', registers }),
      },
    };
  }

  /** Live counts, for leak checks and `muster status`. */
  summary(): { connections: number; servers: number; pendingJoins: number; reservedIds: number } {
    return worldSummary(this.#rt.state);
  }

  /** Cluster mode: the other instances' servers held here, and joins sent to them or run for them. */
  clusterSummary(): { replicas: number; forwardedJoins: number; joinsForOthers: number } {
    const c = this.#rt.state.cluster;
    return { replicas: c.replicas.size, forwardedJoins: c.forwarded.size, joinsForOthers: c.answerTo.size };
  }

  /** How the public list's snapshot is doing. */
  snapshotInfo(): { builds: number; builtAt: number | null; size: number } {
    return { builds: this.#hub.builds, builtAt: this.#hub.snap?.builtAt ?? null, size: this.#hub.snap?.size ?? 0 };
  }

  /** Where the MS's own request ids continue (they are INT64; tests use this to reach 2^63−1). */
  setNextRequestId(next: bigint): void {
    this.#rt.feed({ type: 'set-request-id', now: this.#ctx.scheduler.now(), next });
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    const t = secrets.regTokens;
    if (Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === 'string')) {
      this.#hub.cfg = { ...this.#hub.cfg, regTokens: t as string[] };
      this.#world = { ...this.#world, machine: { ...this.#world.machine, regTokens: t as string[] } };
    }
  }

  accept(conn: Connection, _req: IncomingMessage): ConnectionHandler {
    const id = conn.id;
    this.#conns.set(id, conn);
    this.#rt.attach(conn);
    conn.onSlowConsumer = () => this.#close(conn, GamelistClose.POLICY_VIOLATION, 'slow consumer');
    this.#rt.feed({ type: 'open', now: this.#ctx.scheduler.now(), conn: id, address: conn.remoteAddress });
    return {
      onMessage: (data, binary) => this.#rt.feed({ type: 'frame', now: this.#ctx.scheduler.now(), conn: id, data, binary }),
      onPong: () => this.#rt.feed({ type: 'pong', now: this.#ctx.scheduler.now(), conn: id }),
      onClose: () => {
        this.#conns.delete(id);
        this.#rt.detach(id);
        this.#rt.feed({ type: 'closed', now: this.#ctx.scheduler.now(), conn: id });
      },
    };
  }

  kick(conn: Connection): void {
    this.#close(conn, GamelistClose.POLICY_VIOLATION, 'kicked by an operator');
  }

  goodbye(conn: Connection): void {
    this.#close(conn, GamelistClose.GOING_AWAY, 'server shutting down');
  }

  /** Waiting joins get 503; kept server ids and every timer are dropped. */
  stop(): Promise<void> {
    for (const u of this.#unhook.splice(0)) u();
    this.#rt.feed({ type: 'shutdown', now: this.#ctx.scheduler.now() });
    return this.#rt.stop();
  }

  routes(): HttpRoute[] {
    return gamelistRoutes(this.#hub);
  }

  /** Closes the socket; its server leaves the list at once. */
  #close(conn: Connection, code: number, reason: string): void {
    if (this.#rt.state.peers.has(conn.id)) this.#rt.feed({ type: 'close', now: this.#ctx.scheduler.now(), conn: conn.id, code, reason });
    else conn.close(code, reason);
  }

  async #join(req: HttpRequest): Promise<HttpReply> {
    if (this.#rt.stopped) {
      this.#hub.m.joins.inc({ result: 'shutting_down' });
      const body: JoinAnswer = { success: false, error: { type: JoinFailure.SHUTTING_DOWN, msg: 'The masterserver is shutting down' } };
      return { status: 503, body };
    }
    const serverId = req.params.server_id ?? '';
    const l = this.#rt.state.listed.get(serverId);
    const target = l === undefined ? undefined : this.#conns.get(l.conn);
    const unreachable = target !== undefined && target.closing;
    const call = `join-${++this.#calls}`;
    return this.#rt.call(call, { type: 'join', now: this.#ctx.scheduler.now(), call, serverId, body: req.body, unreachable });
  }

  /** Another instance's player joins a server here: run it as a local join; the world sends the answer back. */
  #remoteJoin(from: string, id: string, serverId: string, body: unknown): void {
    const now = this.#ctx.scheduler.now();
    if (this.#rt.stopped) {
      const answer: JoinAnswer = { success: false, error: { type: JoinFailure.SHUTTING_DOWN, msg: 'The masterserver is shutting down' } };
      this.#effect({ type: 'cluster', to: from, msg: { t: 'joined', id, status: 503, body: answer } });
      return;
    }
    const l = this.#rt.state.listed.get(serverId);
    const target = l === undefined ? undefined : this.#conns.get(l.conn);
    const unreachable = target !== undefined && target.closing;
    this.#rt.feed({ type: 'join', now, call: `remote-join-${++this.#calls}`, serverId, body, unreachable, origin: { instance: from, id } });
  }

  #effect(e: GamelistEffect): void {
    switch (e.type) {
      case 'ping':
        this.#conns.get(e.conn)?.ping();
        return;
      case 'phase':
        this.#conns.get(e.conn)?.stateChanged(e.from, e.to);
        return;
      case 'authenticated':
        this.#conns.get(e.conn)?.markAuthenticated();
        return;
      case 'auth-failed':
        this.#conns.get(e.conn)?.authFailed(e.detail);
        return;
      case 'identity': {
        const c = this.#conns.get(e.conn);
        if (c) c.identity = e.identity;
        return;
      }
      case 'count':
        if (e.metric === 'registrations') this.#hub.m.registrations.inc({ result: e.result });
        else this.#hub.m.joins.inc({ result: e.result });
        return;
      case 'list':
        changed(this.#hub, e.change, e.serverId);
        this.#hub.m.servers.set(e.servers);
        return;
      case 'cluster':
        this.#link?.publish(e.to, e.msg);
        return;
      default:
        assertNever(e, 'gamelist effect');
    }
  }
}
