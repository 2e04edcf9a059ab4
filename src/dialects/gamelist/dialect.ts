/**
 * The gamelist dialect: the thin shell the core talks to. Its jobs live in their own
 * modules over one shared `Hub` (types.ts): the socket glue (sockets.ts), registrations
 * with their TTL, limits and kept server ids (registrations.ts), player joins
 * (joins.ts), and the public list and routes (list.ts).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge } from 'prom-client';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpRoute } from '../../core/dialect.js';
import { PendingRequests } from '../../core/pending.js';
import { JoinFailure } from '../../protocols/gamelist/api.js';
import { GamelistClose, gamelistCloseCodes, Int64Counter } from '../../protocols/gamelist/messages.js';
import { failure, joinExpired } from './joins.js';
import { gamelistRoutes } from './list.js';
import { registrationDeadline } from './registrations.js';
import { initialState } from './machine.js';
import { closeServer, feed, release } from './sockets.js';
import { GAMELIST_MAX_BUFFERED_BYTES, type GameServer, type GamelistDialectConfig, type GamelistDialectDeps, type Hub, type JoinWait } from './types.js';

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

  constructor(cfg: GamelistDialectConfig, ctx: DialectContext, deps: GamelistDialectDeps) {
    this.path = cfg.path;
    this.preAuthMaxBytes = cfg.preAuthMaxBytes ?? DEFAULT_PRE_AUTH_MAX_BYTES;
    const registers = [ctx.registry];
    const hub: Hub = {
      cfg,
      machine: {
        regTokens: cfg.regTokens,
        maxFailedRegistrations: cfg.maxFailedRegistrations,
        preAuthMaxBytes: this.preAuthMaxBytes,
        secretEquals: deps.secretEquals,
      },
      ctx,
      secretEquals: deps.secretEquals,
      newServerId: deps.newServerId ?? randomUUID,
      sockets: new Map(),
      listed: new Map(),
      held: new Set(),
      perIp: new Map(),
      reserved: new Map(),
      pending: new PendingRequests<JoinWait>(ctx.scheduler, (e) => joinExpired(hub, e)),
      convs: new Set(),
      ids: new Int64Counter(),
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
    this.#hub = hub;
  }


  /** Live counts, for leak checks and `muster status`. */
  summary(): { connections: number; servers: number; pendingJoins: number; reservedIds: number } {
    return {
      connections: this.#hub.sockets.size,
      servers: this.#hub.listed.size,
      pendingJoins: this.#hub.pending.size,
      reservedIds: this.#hub.reserved.size,
    };
  }

  /** How the public list's snapshot is doing. */
  snapshotInfo(): { builds: number; builtAt: number | null; size: number } {
    return { builds: this.#hub.builds, builtAt: this.#hub.snap?.builtAt ?? null, size: this.#hub.snap?.size ?? 0 };
  }

  /** Where the MS's own request ids continue (they are INT64; tests use this to reach 2^63−1). */
  setNextRequestId(next: bigint): void {
    this.#hub.ids.reset(next);
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    const t = secrets.regTokens;
    if (Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === 'string')) {
      this.#hub.cfg = { ...this.#hub.cfg, regTokens: t as string[] };
      this.#hub.machine = { ...this.#hub.machine, regTokens: t as string[] };
    }
  }

  accept(conn: Connection, _req: IncomingMessage): ConnectionHandler {
    const gs: GameServer = {
      conn,
      state: initialState,
      ping: undefined,
      pongDeadline: undefined,
      registrationDeadline: undefined,
      serverId: undefined,
      listing: undefined,
      detached: false,
    };
    this.#hub.sockets.set(conn, gs);
    gs.ping = this.#hub.ctx.scheduler.every(this.#hub.cfg.pingInterval, () => feed(this.#hub, gs, { type: 'ping-tick' }));
    gs.registrationDeadline = this.#hub.ctx.scheduler.after(this.#hub.cfg.registrationTtl, () => registrationDeadline(this.#hub, gs));
    conn.onSlowConsumer = () => closeServer(this.#hub, gs, GamelistClose.POLICY_VIOLATION, 'slow consumer');
    return {
      onMessage: (data, binary) => feed(this.#hub, gs, { type: 'frame', data, binary }),
      onPong: () => feed(this.#hub, gs, { type: 'pong' }),
      onClose: () => release(this.#hub, gs),
    };
  }

  kick(conn: Connection): void {
    const gs = this.#hub.sockets.get(conn);
    if (gs) closeServer(this.#hub, gs, GamelistClose.POLICY_VIOLATION, 'kicked by an operator');
    else conn.close(GamelistClose.POLICY_VIOLATION, 'kicked by an operator');
  }

  goodbye(conn: Connection): void {
    const gs = this.#hub.sockets.get(conn);
    if (gs) closeServer(this.#hub, gs, GamelistClose.GOING_AWAY, 'server shutting down');
    else conn.close(GamelistClose.GOING_AWAY, 'server shutting down');
  }

  stop(): void {
    for (const e of this.#hub.pending.clear()) {
      this.#hub.convs.delete(e.data.conv);
      this.#hub.m.joins.inc({ result: 'shutting_down' });
      e.data.resolve(failure(503, JoinFailure.SHUTTING_DOWN, 'The masterserver is shutting down', e.data.conv));
    }
    for (const r of this.#hub.reserved.values()) r.timer.cancel();
    this.#hub.reserved.clear();
  }


  routes(): HttpRoute[] {
    return gamelistRoutes(this.#hub);
  }
}
