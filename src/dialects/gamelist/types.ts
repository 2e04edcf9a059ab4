/**
 * The gamelist dialect's shared state (`Hub`) and records: one socket (`GameServer`),
 * one listed server (`Listing`), one join waiting for its answer. The dialect's jobs
 * (sockets.ts, registrations.ts, joins.ts, list.ts) are functions over one Hub.
 */
import type { Counter, Gauge } from 'prom-client';
import { GAMELIST_LIMITS } from '../../config/dialects/gamelist.js';
import type { Connection } from '../../core/connection.js';
import type { DialectContext, HttpReply } from '../../core/dialect.js';
import type { PendingRequests } from '../../core/pending.js';
import type { Timer } from '../../core/scheduler.js';
import type { Int64Counter, ServerInfo } from '../../protocols/gamelist/messages.js';
import type { ConnState, MachineConfig } from './machine.js';
import type { ListedServer, Snapshot } from './snapshot.js';

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
export const PAGE_CACHE_ENTRIES = 256;

/** The snapshot is rebuilt at most this often. */
export const SNAPSHOT_MIN_AGE_MS = 1000;
/** Unsent bytes per game server before it is a slow consumer (MS → GS traffic is small). */
export const GAMELIST_MAX_BUFFERED_BYTES = GAMELIST_LIMITS.maxBufferedBytes;
/** Every public route shares one per-IP budget. */
export const PUBLIC_RATE_BUCKET = 'gamelist-public';

/** One socket: one game server. */
export interface GameServer {
  readonly conn: Connection;
  state: ConnState;
  ping: Timer | undefined;
  pongDeadline: Timer | undefined;
  /** Runs until the socket's first listing: a socket that never registers is closed (see registrationDeadline). */
  registrationDeadline: Timer | undefined;
  /** Given on this socket's first successful registration; kept for the socket's life. */
  serverId: string | undefined;
  /** Present while the server is on the list. */
  listing: Listing | undefined;
  detached: boolean;
}

export interface Listing extends ListedServer {
  readonly gs: GameServer;
  info: ServerInfo;
  regToken: string;
  lastRefresh: number;
  ttl: Timer;
}

export interface JoinWait {
  readonly gs: GameServer;
  readonly conv: number;
  readonly resolve: (reply: HttpReply) => void;
}

export type RegistrationResult = 'listed' | 'refreshed' | 'invalid_token' | 'server_limit';
export type JoinResult = 'success' | 'rejected' | 'timeout' | 'not_found' | 'wrong_password' | 'bad_request' | 'server_gone' | 'shutting_down';

/** Everything the dialect's jobs share. */
export interface Hub {
  cfg: GamelistDialectConfig;
  machine: MachineConfig;
  readonly ctx: DialectContext;
  readonly secretEquals: (a: string, b: string) => boolean;
  readonly newServerId: () => string;
  readonly sockets: Map<Connection, GameServer>;
  readonly listed: Map<string, Listing>;
  /** Server ids held by open sockets (listed or not). */
  readonly held: Set<string>;
  readonly perIp: Map<string, number>;
  /** Server ids kept for a GS that reconnects within registrationTtl, by (regToken, name, port). */
  readonly reserved: Map<string, { serverId: string; timer: Timer }>;
  readonly pending: PendingRequests<JoinWait>;
  readonly convs: Set<number>;
  readonly ids: Int64Counter;
  snap: Snapshot | undefined;
  /** Servers that left after the snapshot was built: the list skips them at once. */
  readonly gone: Set<string>;
  dirty: boolean;
  builds: number;
  /** Bumped whenever `gone` changes, so a cached body is never stale by a removal. */
  goneVersion: number;
  clientCache: { snap: Snapshot; goneVersion: number; body: Buffer } | undefined;
  /**
   * Serialized `/v2/servers` pages of the current snapshot, by query. Serializing a page
   * was most of a list request's cost (bench P6); a snapshot lives for at least a second,
   * and most requests ask for the same few pages, so each page is serialized (and
   * UTF-8 encoded: a 1000-server page is 300 KiB) once.
   */
  readonly pageCache: { snap: Snapshot | undefined; goneVersion: number; pages: Map<string, Buffer> };
  readonly m: {
    servers: Gauge;
    registrations: Counter<'result'>;
    joins: Counter<'result'>;
    listRequests: Counter<'route'>;
    snapshotBuilds: Counter;
  };
}
