/**
 * The Clusterio dialect's configuration and limits. The world (world/) and the glue on
 * the runtime (dialect.ts) read them.
 */
import { ClusterioClose } from '../../protocols/clusterio/messages.js';

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
