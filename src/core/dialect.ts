import type { IncomingMessage } from 'node:http';
import type { TSchema } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Broker } from '../cluster/broker.js';
import type { Store } from '../store/types.js';
import type { Connection } from './connection.js';
import type { CloseCodeTable } from '../common/errors.js';
import type { Scheduler } from './scheduler.js';

/**
 * The seam between the core and a wire dialect. A dialect declares its path, its
 * close codes and its limits; it may refuse an upgrade with an HTTP status; for each
 * accepted socket it returns a handler that turns frames into its own typed messages.
 * The core never parses a dialect's frames and never names a dialect.
 */

/** The default pre-authentication frame cap of the dialects that have one (16 KiB). */
export const DEFAULT_PRE_AUTH_MAX_BYTES = 16_384;

/**
 * Before authentication the socket layer refuses, at the frame header, frames over
 * this many times the dialect's `preAuthMaxBytes`: a little room above the cap, so a
 * frame just over it still gets the dialect's own close with a reason, while junk is
 * never buffered (`ws` has no reason to give with its own 1009).
 */
export const PRE_AUTH_SOCKET_FACTOR = 4;

export interface DialectContext {
  readonly scheduler: Scheduler;
  readonly store: Store;
  readonly broker: Broker;
  readonly logger: Logger;
  readonly registry: Registry;
}

export type UpgradeVerdict =
  | { readonly ok: true }
  | { readonly ok: false; readonly status: number; readonly message: string };

export interface ConnectionHandler {
  /** A frame arrived (already counted and timestamped by the core). */
  onMessage(data: Buffer, isBinary: boolean): void;
  /** A pong arrived. */
  onPong?(): void;
  /** The socket has closed, whoever closed it. Release everything here. */
  onClose(code: number, reason: string): void;
}

export interface HttpRequest {
  readonly params: Readonly<Record<string, string>>;
  readonly query: Readonly<Record<string, string | undefined>>;
  readonly body: unknown;
  readonly ip: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

export interface HttpReply {
  readonly status?: number;
  readonly body?: unknown;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface HttpRoute {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Fastify-style path, e.g. `/api/v1/bus/services` or `/v2/servers/:id/join`. */
  readonly url: string;
  /** `admin` routes need the admin bearer token; `public` ones are rate limited per IP. */
  readonly access: 'admin' | 'public';
  readonly summary: string;
  /**
   * Public routes only: a per-IP budget per minute. Routes that share a `bucket`
   * share the budget. Past it the answer is 429.
   */
  readonly rateLimit?: { readonly bucket: string; readonly perMinute: () => number };
  /** JSON schema of the response body, for the OpenAPI document. */
  readonly response?: unknown;
  /**
   * The request body's schema: the HTTP edge checks it before the handler runs
   * (a refused body is `400 BAD_REQUEST`, the handler never sees it), and the
   * OpenAPI document shows it. A handler with a `body` may trust `req.body`'s shape.
   */
  readonly body?: HttpBody;
  /**
   * The answer gathers every instance's part (cluster mode): it carries the headers
   * `Muster-Instances` and `Muster-Instances-Missing` (`always`: also with one process),
   * and the OpenAPI document says so.
   */
  readonly gathered?: 'always' | 'cluster';
  readonly handler: (req: HttpRequest) => HttpReply | Promise<HttpReply>;
}

/** How the HTTP edge checks a route's request body. */
export interface HttpBody {
  /** A TypeBox schema (plain JSON schema, so the OpenAPI document shows it as is). */
  readonly schema: TSchema;
  /** An absent body is allowed; the handler then sees `undefined`. A JSON `null` is still checked. */
  readonly optional?: boolean;
  /** What the schema cannot say (e.g. `first <= last`); runs only on bodies that pass the schema. */
  readonly refine?: (body: unknown) => boolean;
  /** The 400's `message` for a refused body. Default: the schema's first error, with its path. */
  readonly message?: (body: unknown) => string;
}

export interface Dialect {
  readonly name: string;
  readonly path: string;
  readonly closeCodes: CloseCodeTable;
  /** Unsent bytes per connection before it is a slow consumer. */
  readonly maxBufferedBytes: number;
  /**
   * The largest frame a peer may send before it has authenticated (until the dialect
   * calls `conn.markAuthenticated()`). The dialect closes a bigger one with 1009 and a
   * reason; the socket layer refuses one over PRE_AUTH_SOCKET_FACTOR times this at its
   * header, before buffering it. Absent: the dialect authenticates at the upgrade.
   */
  readonly preAuthMaxBytes?: number;
  /** Checked before the WebSocket handshake completes; refusing answers with an HTTP status. */
  authorizeUpgrade?(req: IncomingMessage): UpgradeVerdict;
  /** Takes an accepted connection. */
  accept(conn: Connection, req: IncomingMessage): ConnectionHandler;
  /** HTTP routes the dialect adds (admin ones under /api/v1). */
  routes?(): HttpRoute[];
  /** Closes a connection on an operator's request. Default: close 1008 "kicked". */
  kick?(conn: Connection): void;
  /** The goodbye at shutdown. Default: close 1001. */
  goodbye?(conn: Connection): void;
  /** A short summary for `muster status` and the admin API. */
  summary?(): Record<string, unknown>;
  /** Secrets changed (SIGHUP). Existing connections stay. */
  reloadSecrets?(secrets: Record<string, unknown>): void;
  /** Stops timers and releases state after every connection has closed. */
  stop?(): Promise<void> | void;
  /**
   * Called before each /metrics scrape: a dialect may gather samples from its peers
   * (asynchronously) and put them on the registry. A failure is logged, not fatal.
   */
  beforeScrape?(): Promise<void>;
}
