/**
 * The gamelist dialect's config and what the public list (list.ts) shares with the
 * glue (`Hub`): the world's listings and the snapshot read model.
 */
import type { Counter, Gauge } from 'prom-client';
import { GAMELIST_LIMITS } from '../../config/dialects/gamelist.js';
import type { HttpReply, HttpRequest } from '../../core/dialect.js';
import type { Snapshot } from './snapshot.js';
import type { Listing } from './world.js';
import type { Replica } from './world-cluster.js';

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

export type RegistrationResult = 'listed' | 'refreshed' | 'invalid_token' | 'server_limit';
export type JoinResult = 'success' | 'rejected' | 'timeout' | 'not_found' | 'wrong_password' | 'bad_request' | 'server_gone' | 'shutting_down';

/** What the list routes share: the world's listings (a live view) and the snapshot read model. */
export interface Hub {
  cfg: GamelistDialectConfig;
  /** The world's listings, updated in place by its steps (read only here). */
  readonly listed: ReadonlyMap<string, Listing>;
  /** The other instances' listings (cluster mode; empty in one process), likewise. */
  readonly replicas: ReadonlyMap<string, Replica>;
  /** This instance's id (the admin list names each server's instance). */
  readonly instanceId: string;
  /** When a socket opened (the admin list shows it). */
  readonly connectedAt: (conn: string) => number | undefined;
  /** Feeds a join to the world and waits for its answer. */
  readonly join: (req: HttpRequest) => Promise<HttpReply>;
  readonly now: () => number;
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
