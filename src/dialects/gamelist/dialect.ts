import { randomInt, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge } from 'prom-client';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpReply, type HttpRequest, type HttpRoute } from '../../core/dialect.js';
import { PendingRequests, type PendingEntry } from '../../core/pending.js';
import type { Timer } from '../../core/scheduler.js';
import { JoinFailure, type JoinAnswer } from '../../protocols/gamelist/api.js';
import {
  canonicalInt64,
  encodeJoin,
  encodeRegistrationError,
  encodeResponse,
  GamelistClose,
  gamelistCloseCodes,
  Int64Counter,
  RegistrationError,
  UINT32_MAX,
  type RegisterMessage,
  type ResponseMessage,
  type ServerInfo,
} from '../../protocols/gamelist/messages.js';
import { initialState, step, type ConnState, type Effect, type GamelistEvent, type MachineConfig } from './machine.js';
import {
  buildSnapshot,
  hasPassword,
  parseFilters,
  parseListQuery,
  queryAll,
  queryPage,
  toNorthstar,
  type ListedServer,
  type Snapshot,
} from './snapshot.js';

export interface GamelistDialectConfig {
  path: string;
  regTokens: readonly string[];
  registrationTtl: number;
  pingInterval: number;
  pongTimeout: number;
  joinTimeout: number;
  maxServers: number;
  maxServersPerIp: number;
  maxFailedRegistrations: number;
  publicRatePerIpPerMinute: number;
  /** Largest frame before a valid regToken (default DEFAULT_PRE_AUTH_MAX_BYTES). */
  preAuthMaxBytes?: number;
}

export interface GamelistDialectDeps {
  secretEquals: (a: string, b: string) => boolean;
  /** New server ids (default: random UUIDs). */
  newServerId?: () => string;
}

/** How many serialized list pages are kept per snapshot. */
const PAGE_CACHE_ENTRIES = 256;

/** The snapshot is rebuilt at most this often. */
export const SNAPSHOT_MIN_AGE_MS = 1000;
/** Unsent bytes per game server before it is a slow consumer (MS → GS traffic is small). */
export const GAMELIST_MAX_BUFFERED_BYTES = 1 << 20;
/** Every public route shares one per-IP budget. */
export const PUBLIC_RATE_BUCKET = 'gamelist-public';

/** One socket: one game server. */
interface GameServer {
  readonly conn: Connection;
  state: ConnState;
  ping: Timer | undefined;
  pongDeadline: Timer | undefined;
  /** Given on this socket's first successful registration; kept for the socket's life. */
  serverId: string | undefined;
  /** Present while the server is on the list. */
  listing: Listing | undefined;
  detached: boolean;
}

interface Listing extends ListedServer {
  readonly gs: GameServer;
  info: ServerInfo;
  regToken: string;
  lastRefresh: number;
  ttl: Timer;
}

interface JoinWait {
  readonly gs: GameServer;
  readonly conv: number;
  readonly resolve: (reply: HttpReply) => void;
}

type RegistrationResult = 'listed' | 'refreshed' | 'invalid_token' | 'server_limit';
type JoinResult = 'success' | 'rejected' | 'timeout' | 'not_found' | 'wrong_password' | 'bad_request' | 'server_gone' | 'shutting_down';

const publicServerSchema = {
  type: 'object',
  properties: {
    server_id: { type: 'string' },
    name: { type: 'string' },
    desc: { type: 'string' },
    map: { type: 'string' },
    playlist: { type: 'string' },
    curPlayers: { type: 'integer' },
    maxPlayers: { type: 'integer' },
    hasPassword: { type: 'boolean' },
    gameState: { type: 'integer' },
    region: { type: 'string' },
    lastSeen: { type: 'string', format: 'date-time' },
  },
};

export class GamelistDialect implements Dialect {
  readonly name = 'gamelist';
  readonly path: string;
  readonly closeCodes = gamelistCloseCodes;
  readonly maxBufferedBytes = GAMELIST_MAX_BUFFERED_BYTES;
  readonly preAuthMaxBytes: number;

  #cfg: GamelistDialectConfig;
  #machine: MachineConfig;
  readonly #ctx: DialectContext;
  readonly #secretEquals: (a: string, b: string) => boolean;
  readonly #newServerId: () => string;
  readonly #sockets = new Map<Connection, GameServer>();
  readonly #listed = new Map<string, Listing>();
  /** Server ids held by open sockets (listed or not). */
  readonly #held = new Set<string>();
  readonly #perIp = new Map<string, number>();
  /** Server ids kept for a GS that reconnects within registrationTtl, by (regToken, name, port). */
  readonly #reserved = new Map<string, { serverId: string; timer: Timer }>();
  readonly #pending: PendingRequests<JoinWait>;
  readonly #convs = new Set<number>();
  readonly #ids = new Int64Counter();

  #snap: Snapshot | undefined;
  /** Servers that left after the snapshot was built: the list skips them at once. */
  readonly #gone = new Set<string>();
  #dirty = true;
  #builds = 0;
  /** Bumped whenever #gone changes, so a cached body is never stale by a removal. */
  #goneVersion = 0;
  #clientCache: { snap: Snapshot; goneVersion: number; body: Buffer } | undefined;
  /**
   * Serialized `/v2/servers` pages of the current snapshot, by query. Serializing a page
   * was most of a list request's cost (bench P6); a snapshot lives for at least a second,
   * and most requests ask for the same few pages, so each page is serialized (and
   * UTF-8 encoded: a 1000-server page is 300 KiB) once.
   */
  #pageCache: { snap: Snapshot | undefined; goneVersion: number; pages: Map<string, Buffer> } = {
    snap: undefined,
    goneVersion: 0,
    pages: new Map(),
  };

  readonly #m: {
    servers: Gauge;
    registrations: Counter<'result'>;
    joins: Counter<'result'>;
    listRequests: Counter<'route'>;
    snapshotBuilds: Counter;
  };

  constructor(cfg: GamelistDialectConfig, ctx: DialectContext, deps: GamelistDialectDeps) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.path = cfg.path;
    this.#secretEquals = deps.secretEquals;
    this.#newServerId = deps.newServerId ?? randomUUID;
    this.preAuthMaxBytes = cfg.preAuthMaxBytes ?? DEFAULT_PRE_AUTH_MAX_BYTES;
    this.#machine = {
      regTokens: cfg.regTokens,
      maxFailedRegistrations: cfg.maxFailedRegistrations,
      preAuthMaxBytes: this.preAuthMaxBytes,
      secretEquals: deps.secretEquals,
    };
    this.#pending = new PendingRequests<JoinWait>(ctx.scheduler, (e) => this.#joinExpired(e));
    const registers = [ctx.registry];
    this.#m = {
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
    };
  }

  /** Live counts, for leak checks and `muster status`. */
  summary(): { connections: number; servers: number; pendingJoins: number; reservedIds: number } {
    return {
      connections: this.#sockets.size,
      servers: this.#listed.size,
      pendingJoins: this.#pending.size,
      reservedIds: this.#reserved.size,
    };
  }

  /** How the public list's snapshot is doing. */
  snapshotInfo(): { builds: number; builtAt: number | null; size: number } {
    return { builds: this.#builds, builtAt: this.#snap?.builtAt ?? null, size: this.#snap?.size ?? 0 };
  }

  /** Where the MS's own request ids continue (they are INT64; tests use this to reach 2^63−1). */
  setNextRequestId(next: bigint): void {
    this.#ids.reset(next);
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    const t = secrets.regTokens;
    if (Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === 'string')) {
      this.#cfg = { ...this.#cfg, regTokens: t as string[] };
      this.#machine = { ...this.#machine, regTokens: t as string[] };
    }
  }

  accept(conn: Connection, _req: IncomingMessage): ConnectionHandler {
    const gs: GameServer = { conn, state: initialState, ping: undefined, pongDeadline: undefined, serverId: undefined, listing: undefined, detached: false };
    this.#sockets.set(conn, gs);
    gs.ping = this.#ctx.scheduler.every(this.#cfg.pingInterval, () => this.#feed(gs, { type: 'ping-tick' }));
    conn.onSlowConsumer = () => this.#close(gs, GamelistClose.POLICY_VIOLATION, 'slow consumer');
    return {
      onMessage: (data, binary) => this.#feed(gs, { type: 'frame', data, binary }),
      onPong: () => this.#feed(gs, { type: 'pong' }),
      onClose: () => this.#release(gs),
    };
  }

  kick(conn: Connection): void {
    const gs = this.#sockets.get(conn);
    if (gs) this.#close(gs, GamelistClose.POLICY_VIOLATION, 'kicked by an operator');
    else conn.close(GamelistClose.POLICY_VIOLATION, 'kicked by an operator');
  }

  goodbye(conn: Connection): void {
    const gs = this.#sockets.get(conn);
    if (gs) this.#close(gs, GamelistClose.GOING_AWAY, 'server shutting down');
    else conn.close(GamelistClose.GOING_AWAY, 'server shutting down');
  }

  stop(): void {
    for (const e of this.#pending.clear()) {
      this.#convs.delete(e.data.conv);
      this.#m.joins.inc({ result: 'shutting_down' });
      e.data.resolve(failure(503, JoinFailure.SHUTTING_DOWN, 'The masterserver is shutting down', e.data.conv));
    }
    for (const r of this.#reserved.values()) r.timer.cancel();
    this.#reserved.clear();
  }

  // ---- the state machine's effects ----

  #feed(gs: GameServer, event: GamelistEvent): void {
    const { state, effects } = step(gs.state, event, this.#machine);
    gs.conn.stateChanged(gs.state.phase, state.phase);
    gs.state = state;
    if (state.authenticated) gs.conn.markAuthenticated();
    for (const e of effects) this.#run(gs, e);
  }

  #run(gs: GameServer, e: Effect): void {
    switch (e.type) {
      case 'send':
        gs.conn.send(e.frame);
        return;
      case 'close':
        this.#close(gs, e.code, e.reason);
        return;
      case 'register':
        this.#register(gs, e.msg);
        return;
      case 'registration-refused':
        gs.conn.authFailed('registration with an invalid token');
        this.#registration(e.reason);
        return;
      case 'response':
        this.#response(gs, e.msg);
        return;
      case 'ping':
        gs.conn.ping();
        return;
      case 'arm-pong-deadline':
        gs.pongDeadline?.cancel();
        gs.pongDeadline = this.#ctx.scheduler.after(this.#cfg.pongTimeout, () => this.#feed(gs, { type: 'pong-deadline' }));
        return;
      case 'cancel-pong-deadline':
        gs.pongDeadline?.cancel();
        gs.pongDeadline = undefined;
        return;
    }
  }

  // ---- registration ----

  #registration(result: RegistrationResult): void {
    this.#m.registrations.inc({ result });
  }

  #register(gs: GameServer, msg: RegisterMessage): void {
    const now = this.#ctx.scheduler.now();
    const listing = gs.listing;
    if (listing) {
      listing.info = msg.info;
      listing.regToken = msg.regToken;
      listing.lastRefresh = now;
      this.#changed();
      this.#registration('refreshed');
      gs.conn.identity = `${msg.info.name} (${listing.serverId})`;
      gs.conn.send(encodeResponse(-1, msg.id, true));
      return;
    }
    const ip = gs.conn.remoteAddress;
    if (this.#listed.size >= this.#cfg.maxServers || (this.#perIp.get(ip) ?? 0) >= this.#cfg.maxServersPerIp) {
      this.#registration('server_limit');
      gs.conn.send(encodeRegistrationError(msg.id, RegistrationError.SERVER_LIMIT));
      return;
    }
    const first = gs.serverId === undefined;
    gs.serverId ??= this.#claimReserved(gs, msg) ?? this.#freshServerId();
    const serverId = gs.serverId;
    this.#held.add(serverId);
    const entry: Listing = {
      gs,
      serverId,
      info: msg.info,
      regToken: msg.regToken,
      registeredAt: now,
      lastRefresh: now,
      ttl: this.#ctx.scheduler.after(this.#cfg.registrationTtl, () => this.#ttlCheck(entry)),
    };
    gs.listing = entry;
    this.#listed.set(serverId, entry);
    if (this.#gone.delete(serverId)) this.#goneVersion++;
    this.#perIp.set(ip, (this.#perIp.get(ip) ?? 0) + 1);
    this.#changed();
    this.#m.servers.set(this.#listed.size);
    this.#registration('listed');
    gs.conn.stateChanged('open', 'listed');
    gs.conn.identity = `${msg.info.name} (${serverId})`;
    gs.conn.send(encodeResponse(-1, msg.id, true, undefined, first ? { server_id: serverId } : {}));
  }

  #freshServerId(): string {
    for (;;) {
      const id = this.#newServerId();
      if (!this.#held.has(id) && ![...this.#reserved.values()].some((r) => r.serverId === id)) return id;
    }
  }

  #claimReserved(gs: GameServer, msg: RegisterMessage): string | undefined {
    const key = reservationKey(msg.regToken, msg.info, gs.conn.remoteAddress);
    const r = this.#reserved.get(key);
    if (!r) return undefined;
    r.timer.cancel();
    this.#reserved.delete(key);
    return this.#held.has(r.serverId) ? undefined : r.serverId;
  }

  #ttlCheck(entry: Listing): void {
    if (entry.gs.listing !== entry) return;
    const left = entry.lastRefresh + this.#cfg.registrationTtl - this.#ctx.scheduler.now();
    if (left > 0) {
      entry.ttl = this.#ctx.scheduler.after(left, () => this.#ttlCheck(entry));
      return;
    }
    this.#ctx.logger.debug({ server: entry.serverId }, 'gamelist: registration expired; server unlisted');
    this.#unlist(entry.gs, false);
  }

  /** Takes the server off the list. On a socket close, its id is kept for registrationTtl. */
  #unlist(gs: GameServer, reserve: boolean): void {
    const entry = gs.listing;
    if (!entry) return;
    gs.listing = undefined;
    entry.ttl.cancel();
    if (this.#listed.get(entry.serverId) === entry) this.#listed.delete(entry.serverId);
    const ip = gs.conn.remoteAddress;
    const n = (this.#perIp.get(ip) ?? 1) - 1;
    if (n > 0) this.#perIp.set(ip, n);
    else this.#perIp.delete(ip);
    if (this.#snap?.entry(entry.serverId) && !this.#gone.has(entry.serverId)) {
      this.#gone.add(entry.serverId);
      this.#goneVersion++;
    }
    this.#changed();
    this.#m.servers.set(this.#listed.size);
    if (reserve) {
      const key = reservationKey(entry.regToken, entry.info, gs.conn.remoteAddress);
      this.#reserved.get(key)?.timer.cancel();
      const slot = {
        serverId: entry.serverId,
        timer: this.#ctx.scheduler.after(this.#cfg.registrationTtl, () => {
          if (this.#reserved.get(key) === slot) this.#reserved.delete(key);
        }),
      };
      this.#reserved.set(key, slot);
    }
  }

  // ---- closing ----

  /** Closes the socket and takes its server off the list at once. */
  #close(gs: GameServer, code: number, reason: string): void {
    gs.state = { ...gs.state, phase: 'closed' };
    this.#detach(gs);
    gs.conn.close(code, reason);
  }

  /** Releases everything the socket holds, once. */
  #detach(gs: GameServer): void {
    if (gs.detached) return;
    gs.detached = true;
    gs.ping?.cancel();
    gs.ping = undefined;
    gs.pongDeadline?.cancel();
    gs.pongDeadline = undefined;
    this.#unlist(gs, true);
    if (gs.serverId !== undefined) this.#held.delete(gs.serverId);
    for (const e of this.#pending.takeWhere((p) => p.data.gs === gs)) {
      this.#convs.delete(e.data.conv);
      this.#m.joins.inc({ result: 'server_gone' });
      e.data.resolve(failure(502, JoinFailure.SERVER_GONE, 'The game server went away before answering', e.data.conv));
    }
  }

  #release(gs: GameServer): void {
    gs.state = { ...gs.state, phase: 'closed' };
    this.#detach(gs);
    this.#sockets.delete(gs.conn);
  }

  // ---- joins ----

  #response(gs: GameServer, msg: ResponseMessage): void {
    const key = canonicalInt64(msg.id);
    const entry = msg.type === -2 ? this.#pending.get(key) : undefined;
    if (!entry || entry.data.gs !== gs) {
      this.#ctx.logger.debug({ conn: gs.conn.id, type: msg.type, id: msg.id }, 'gamelist: response to an unknown id ignored');
      return;
    }
    this.#pending.take(key);
    this.#convs.delete(entry.data.conv);
    this.#m.joins.inc({ result: msg.success ? 'success' : 'rejected' });
    const body: JoinAnswer = { success: msg.success, conv: entry.data.conv };
    if (msg.error) body.error = msg.error;
    entry.data.resolve({ status: 200, body });
  }

  #joinExpired(e: PendingEntry<JoinWait>): void {
    this.#convs.delete(e.data.conv);
    this.#m.joins.inc({ result: 'timeout' });
    e.data.resolve(failure(504, JoinFailure.TIMEOUT, `The game server did not answer within ${this.#cfg.joinTimeout} ms`, e.data.conv));
  }

  #freshConv(): number {
    for (;;) {
      const conv = randomInt(0, UINT32_MAX + 1);
      if (!this.#convs.has(conv)) return conv;
    }
  }

  #join(req: HttpRequest): HttpReply | Promise<HttpReply> {
    const fail = (result: JoinResult, reply: HttpReply): HttpReply => {
      this.#m.joins.inc({ result });
      return reply;
    };
    const serverId = req.params.server_id ?? '';
    const listing = this.#listed.get(serverId);
    if (!listing) return fail('not_found', failure(404, JoinFailure.NOT_FOUND, `No listed server ${serverId}`));
    const body = isObj(req.body) ? req.body : {};
    const password = listing.info.password;
    if (password !== undefined && hasPassword(listing.info)) {
      const given = typeof body.password === 'string' ? body.password : '';
      if (!this.#secretEquals(given, password)) return fail('wrong_password', failure(403, JoinFailure.WRONG_PASSWORD, 'Wrong password'));
    }
    const { sessionToken, username } = body;
    const clantag = body.clantag ?? '';
    if (typeof sessionToken !== 'string' || typeof username !== 'string' || typeof clantag !== 'string') {
      return fail(
        'bad_request',
        failure(400, JoinFailure.BAD_REQUEST, 'The body must be JSON {sessionToken: string, username: string, clantag?: string, password?: string}'),
      );
    }
    const gs = listing.gs;
    const conv = this.#freshConv();
    const id = this.#ids.next();
    if (!gs.conn.send(encodeJoin(id, { sessionToken, username, clantag, conv }))) {
      return fail('server_gone', failure(502, JoinFailure.SERVER_GONE, 'The game server cannot take the request', conv));
    }
    this.#convs.add(conv);
    return new Promise<HttpReply>((resolve) => {
      this.#pending.add(canonicalInt64(id), this.#cfg.joinTimeout, { gs, conv, resolve });
    });
  }

  // ---- the public list ----

  #changed(): void {
    this.#dirty = true;
  }

  /** The current snapshot, rebuilt first if something changed and the last build is a second old. */
  #snapshot(): Snapshot {
    const now = this.#ctx.scheduler.now();
    if (!this.#snap || (this.#dirty && now - this.#snap.builtAt >= SNAPSHOT_MIN_AGE_MS)) {
      this.#snap = buildSnapshot(this.#listed.values(), now);
      this.#gone.clear();
      this.#dirty = false;
      this.#builds++;
      this.#m.snapshotBuilds.inc();
    }
    return this.#snap;
  }


  #listServers(req: HttpRequest): HttpReply {
    this.#m.listRequests.inc({ route: '/v2/servers' });
    const q = parseListQuery(req.query);
    if (!q.ok) return { status: 400, body: { error: 'BAD_REQUEST', message: q.detail } };
    const snap = this.#snapshot();
    const cache = this.#pageCache;
    if (cache.snap !== snap || cache.goneVersion !== this.#goneVersion) {
      cache.snap = snap;
      cache.goneVersion = this.#goneVersion;
      cache.pages.clear();
    }
    const key = JSON.stringify(q.value);
    let body = cache.pages.get(key);
    if (body === undefined) {
      body = Buffer.from(JSON.stringify(queryPage(snap, q.value, this.#gone)));
      if (cache.pages.size >= PAGE_CACHE_ENTRIES) cache.pages.clear();
      cache.pages.set(key, body);
    }
    return json(body);
  }

  #clientServers(req: HttpRequest): HttpReply {
    this.#m.listRequests.inc({ route: '/client/servers' });
    const q = parseFilters(req.query);
    if (!q.ok) return { status: 400, body: { error: 'BAD_REQUEST', message: q.detail } };
    const snap = this.#snapshot();
    const plain = Object.keys(q.value.filters).length === 0 && q.value.sort === 'players';
    const cached = this.#clientCache;
    if (plain && cached && cached.snap === snap && cached.goneVersion === this.#goneVersion) return json(cached.body);
    const body = Buffer.from(JSON.stringify(queryAll(snap, q.value.filters, q.value.sort, this.#gone).map(toNorthstar)));
    if (plain) this.#clientCache = { snap, goneVersion: this.#goneVersion, body };
    return json(body);
  }

  routes(): HttpRoute[] {
    const rateLimit = { bucket: PUBLIC_RATE_BUCKET, perMinute: () => this.#cfg.publicRatePerIpPerMinute };
    const errorSchema = { type: 'object', properties: { error: { type: 'string' }, message: { type: 'string' } } };
    return [
      {
        method: 'GET',
        url: '/v2/servers',
        access: 'public',
        summary:
          'The public game server list: filters map, playlist, gameState, hasPassword, notFull, notEmpty, q; sort players|name|newest (full servers last); paging limit (≤1000), cursor',
        rateLimit,
        response: {
          oneOf: [
            {
              type: 'object',
              properties: {
                servers: { type: 'array', items: publicServerSchema },
                total: { type: 'integer' },
                nextCursor: { type: ['string', 'null'] },
              },
            },
            errorSchema,
          ],
        },
        handler: (req) => this.#listServers(req),
      },
      {
        method: 'GET',
        url: '/client/servers',
        access: 'public',
        summary: 'The public game server list in the shape Northstar clients read (same filters and sort, no paging)',
        rateLimit,
        response: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              name: { type: 'string' },
              description: { type: 'string' },
              map: { type: 'string' },
              playlist: { type: 'string' },
              playerCount: { type: 'integer' },
              maxPlayers: { type: 'integer' },
              hasPassword: { type: 'boolean' },
            },
          },
        },
        handler: (req) => this.#clientServers(req),
      },
      {
        method: 'POST',
        url: '/v2/servers/:server_id/join',
        access: 'public',
        summary: 'Ask a game server to let a player join: {sessionToken, username, clantag, password?} → {success, conv, error?}',
        rateLimit,
        response: {
          type: 'object',
          properties: {
            success: { type: 'boolean' },
            conv: { type: 'integer' },
            error: { type: 'object', properties: { type: { type: ['integer', 'string'] }, msg: { type: 'string' } } },
          },
        },
        handler: (req) => this.#join(req),
      },
      {
        method: 'GET',
        url: '/api/v1/gamelist/servers',
        access: 'admin',
        summary: "Every listed game server, live, with its address and connection id",
        response: {
          type: 'array',
          items: {
            type: 'object',
            properties: {
              ...publicServerSchema.properties,
              address: { type: 'string' },
              port: { type: 'integer' },
              connectionId: { type: 'string' },
              connectedAt: { type: 'string', format: 'date-time' },
              registeredAt: { type: 'string', format: 'date-time' },
            },
          },
        },
        handler: () => ({ body: this.#adminList() }),
      },
    ];
  }

  #adminList(): Array<Record<string, unknown>> {
    return [...this.#listed.values()].map((l) => ({
      server_id: l.serverId,
      name: l.info.name,
      desc: l.info.desc,
      map: l.info.map,
      playlist: l.info.playlist,
      curPlayers: l.info.curPlayers,
      maxPlayers: l.info.maxPlayers,
      hasPassword: hasPassword(l.info),
      gameState: l.info.gameState,
      address: l.gs.conn.remoteAddress,
      port: l.info.port,
      connectionId: l.gs.conn.id,
      connectedAt: new Date(l.gs.conn.connectedAt).toISOString(),
      registeredAt: new Date(l.registeredAt).toISOString(),
      lastSeen: new Date(l.lastRefresh).toISOString(),
    }));
  }
}

/**
 * A disconnected server's id is kept for the same regToken, name and port from the same
 * address: name and port are easy to learn and a regToken may be shared, so without the
 * address another game server could take over a listed id (and its players' joins).
 */
function reservationKey(regToken: string, info: Pick<ServerInfo, 'name' | 'port'>, address: string): string {
  return JSON.stringify([regToken, info.name, info.port, address]);
}

function failure(status: number, type: JoinFailure, msg: string, conv?: number): HttpReply {
  const body: JoinAnswer = { success: false, error: { type, msg } };
  if (conv !== undefined) body.conv = conv;
  return { status, body };
}

function json(body: string | Buffer): HttpReply {
  return { body, headers: { 'content-type': 'application/json; charset=utf-8' } };
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
