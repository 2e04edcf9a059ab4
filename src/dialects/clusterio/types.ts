/**
 * The Clusterio dialect's shared state (`Hub`) and records: one socket (`Link`), one
 * registered slave or control (`Peer`), one request the master waits on. The jobs of the
 * dialect (links.ts, handshake.ts, sessions.ts, forwarding.ts, instances.ts,
 * plugins.ts, metrics.ts, routes.ts) are functions over one Hub.
 */
import type { Counter } from 'prom-client';
import type { Connection } from '../../core/connection.js';
import type { DialectContext } from '../../core/dialect.js';
import type { PendingRequests } from '../../core/pending.js';
import type { LogLimiter } from '../../core/ratelimit.js';
import type { Timer } from '../../core/scheduler.js';
import type { Session, SessionManager } from '../../core/session.js';
import type { Envelope } from '../../protocols/clusterio/codec.js';
import { ClusterioClose, type Role } from '../../protocols/clusterio/messages.js';
import type { LinkState, Mode } from './machine.js';
import type { ClusterioRegistry } from './registry.js';
import type { TokenVerifier } from './token.js';

export interface ClusterioDialectConfig {
  path: string;
  authSecret: string;
  /** ms: ping / heartbeat period; a peer silent for twice this is closed (3008). */
  heartbeatInterval: number;
  /** ms: how long a session outlives its socket. */
  sessionTimeout: number;
  /** ms: deadline of a request the master sends a slave (default 120 s). */
  requestTimeout?: number;
  /** ms: how long a /metrics scrape waits for each slave (default 1.5 s: scrapes and their callers time out too). */
  metricsTimeout?: number;
  /** ms: time to register or resume after connecting (default 2 × heartbeatInterval). */
  handshakeTimeout?: number;
  /** Unsent bytes per socket before it is a slow consumer (default 4 MiB). */
  maxBufferedBytes?: number;
  /** Largest frame before the handshake is accepted (default DEFAULT_PRE_AUTH_MAX_BYTES). */
  preAuthMaxBytes?: number;
  /** Unacknowledged bytes a session keeps for replay (default 4 MiB). */
  sessionBufferBytes?: number;
}

export const DEFAULT_REQUEST_TIMEOUT = 120_000;
export const DEFAULT_METRICS_TIMEOUT = 1_500;
export const MAX_EXPIRED_SEQS = 1024;
/** Frames one socket may send before the registry has loaded (start-up only); a client sends one and waits. */
export const MAX_FRAMES_BEFORE_LOAD = 8;
/** Closes after which a session cannot be resumed. */
export const ENDING_CODES = new Set<number>([
  ClusterioClose.NORMAL,
  ClusterioClose.GOING_AWAY,
  ClusterioClose.POLICY_VIOLATION,
  ClusterioClose.INVALID_MESSAGE,
  ClusterioClose.AUTHENTICATION_FAILED,
]);


/** One socket. */
export interface Link {
  readonly conn: Connection;
  state: LinkState;
  /** Next seq in the seed numbering (hello is 1). */
  seedSeq: number;
  peer: Peer | undefined;
  deferred: Array<string | undefined>;
  /** Bytes of the frames that waited for the registry to load (see deferUntilLoaded). */
  deferredBytes: number;
  handshakeTimer: Timer | undefined;
  heartbeat: Timer | undefined;
  /** Set when the server's own close should end the session rather than detach it. */
  endSession: boolean;
}

/** A registered slave or control. In session mode it outlives its sockets. */
export interface Peer {
  readonly key: string;
  readonly role: Role;
  /** Slaves: canonical decimal id. */
  readonly slaveId: string;
  readonly name: string;
  readonly agent: string;
  readonly version: string;
  readonly mode: Mode;
  link: Link | undefined;
  session: Session<Peer, Link> | undefined;
  lastReceived: number;
  /** Controls: instance ids whose output they want. */
  subscriptions: Set<string>;
  /** Seqs of the master's requests that timed out: a late answer is ignored, not an error. */
  readonly expired: Set<number>;
  alive: boolean;
  readonly registeredAt: number;
}

/** A request the master sent a peer and still waits on. */
export interface Outstanding {
  readonly peer: Peer;
  readonly seq: number;
  readonly requestType: string;
  readonly answer: (env: Envelope) => void;
  readonly fail: (reason: string) => void;
}

export interface DialectMetrics {
  resumes: Counter;
  invalidations: Counter;
  pluginEvents: Counter<'type' | 'action'>;
  forwarded: Counter<'type'>;
  pluginTypes: Set<string>;
}

export interface SlaveFamily {
  name: string;
  help: string;
  type: string;
  aggregator: 'sum';
  values: Array<{ labels: Record<string, string>; value: number }>;
  get(): Promise<{ name: string; help: string; type: string; aggregator: 'sum'; values: SlaveFamily['values'] }>;
}

/** Everything the dialect's jobs share: configuration, context, the registry, the online peers. */
export interface Hub {
  cfg: Required<ClusterioDialectConfig>;
  /** authSecret's key, imported once per secret. */
  tokens: TokenVerifier;
  readonly ctx: DialectContext;
  readonly registry: ClusterioRegistry;
  readonly links: Map<Connection, Link>;
  /** Online slaves by id (attached, or a session within its resume window). */
  readonly slaves: Map<string, Peer>;
  readonly controls: Set<Peer>;
  readonly sessions: SessionManager<Peer, Link>;
  readonly pending: PendingRequests<Outstanding>;
  /** The registry has been read from the store; until then frames wait in `Link.deferred`. */
  loaded: boolean;
  readonly families: Map<string, SlaveFamily>;
  /** Warn lines a slave can cause at will (one per reported instance): 5 at once, then 1/s per slave. */
  readonly peerLog: LogLimiter<string>;
  readonly m: DialectMetrics;
}
