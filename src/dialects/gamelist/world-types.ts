/**
 * The gamelist world's state, events, effects and timers (world.ts steps them).
 */
import type { CoreEffect, TimerEvent } from '../../core/runtime.js';
import type { ConnState, MachineConfig } from './machine.js';
import type { ListedServer } from './snapshot.js';
import type { JoinResult, RegistrationResult } from './types.js';
import { initialCluster, type ClusterEffect, type ClusterFx, type ClusterMsg, type ClusterState, type JoinOrigin } from './world-cluster.js';

export interface WorldConfig {
  readonly machine: MachineConfig;
  readonly registrationTtl: number;
  readonly pingInterval: number;
  readonly pongTimeout: number;
  readonly joinTimeout: number;
  readonly maxServers: number;
  readonly maxServersPerIp: number;
  readonly newServerId: () => string;
  /** A random conv (0..UINT32_MAX). */
  readonly newConv: () => number;
  /** Cluster mode: announce the listings to the other instances (absent: one process). */
  readonly cluster?: boolean;
}

export interface PeerRec {
  readonly conn: string;
  readonly address: string;
  readonly state: ConnState;
  /** Given on the socket's first listing; kept for the socket's life. */
  readonly serverId: string | null;
  /** Everything the socket held is released (it is closing). */
  readonly detached: boolean;
}

export interface Listing extends ListedServer {
  readonly conn: string;
  readonly address: string;
  readonly regToken: string;
}

export interface JoinWait {
  readonly conn: string;
  readonly conv: number;
  readonly call: string;
}

export interface GamelistWorld {
  readonly peers: Map<string, PeerRec>;
  readonly listed: Map<string, Listing>;
  /** Server ids held by open sockets (listed or not). */
  readonly held: Set<string>;
  readonly perIp: Map<string, number>;
  /** Server ids kept for a server that reconnects within registrationTtl, by reservationKey. */
  readonly reserved: Map<string, string>;
  /** Joins waiting for their answer, by canonical request id. */
  readonly joins: Map<string, JoinWait>;
  readonly convs: Set<number>;
  /** The MS's next request id (INT64, wraps to 1). */
  nextRequestId: bigint;
  /** The other instances' listings and the joins between instances (cluster mode). */
  readonly cluster: ClusterState;
}

export type TimerKey =
  | { readonly kind: 'ping'; readonly conn: string }
  | { readonly kind: 'pong'; readonly conn: string }
  /** A socket's time to get listed (registrationTtl from its opening). */
  | { readonly kind: 'deadline'; readonly conn: string }
  /** A listing's TTL check. */
  | { readonly kind: 'ttl'; readonly serverId: string }
  /** A kept server id's end. */
  | { readonly kind: 'reserve'; readonly key: string }
  /** A join's joinTimeout, by request id. */
  | { readonly kind: 'join'; readonly id: string }
  /** A join sent to another instance: its joinTimeout, by forward id. */
  | { readonly kind: 'forward'; readonly id: string }
  /** A server id another instance kept: its end, by key digest. */
  | { readonly kind: 'kept'; readonly key: string };

export function timerId(key: TimerKey): string {
  switch (key.kind) {
    case 'ping':
      return `p:${key.conn}`;
    case 'pong':
      return `o:${key.conn}`;
    case 'deadline':
      return `d:${key.conn}`;
    case 'ttl':
      return `t:${key.serverId}`;
    case 'reserve':
      return `r:${key.key}`;
    case 'join':
      return `j:${key.id}`;
    case 'forward':
      return `f:${key.id}`;
    case 'kept':
      return `k:${key.key}`;
  }
}

export type WorldEvent =
  | { readonly type: 'open'; readonly now: number; readonly conn: string; readonly address: string }
  | { readonly type: 'frame'; readonly now: number; readonly conn: string; readonly data: Buffer; readonly binary: boolean }
  | { readonly type: 'pong'; readonly now: number; readonly conn: string }
  /** Close the socket (kick, shutdown, slow consumer): its server leaves the list at once. */
  | { readonly type: 'close'; readonly now: number; readonly conn: string; readonly code: number; readonly reason: string }
  /** The socket has gone. */
  | { readonly type: 'closed'; readonly now: number; readonly conn: string }
  | TimerEvent<TimerKey>
  /**
   * POST /v2/servers/:server_id/join, answered by a `reply` naming `call`. `unreachable`:
   * the listed server's socket takes no more frames (it is closing). `origin`: another
   * instance asked (its answer goes back there, and only a server listed here is joined).
   */
  | {
      readonly type: 'join';
      readonly now: number;
      readonly call: string;
      readonly serverId: string;
      readonly body: unknown;
      readonly unreachable?: boolean;
      readonly origin?: JoinOrigin;
    }
  /** A message from another instance's gamelist (cluster mode). */
  | { readonly type: 'remote'; readonly now: number; readonly from: string; readonly msg: ClusterMsg }
  /** Another instance came up (or back) or went away. */
  | { readonly type: 'peer'; readonly now: number; readonly instance: string; readonly up: boolean }
  /** The server stops: waiting joins get 503, kept ids are dropped. */
  | { readonly type: 'shutdown'; readonly now: number }
  /** Where the MS's request ids continue. */
  | { readonly type: 'set-request-id'; readonly now: number; readonly next: bigint };

/** The dialect's own effects. */
export type GamelistEffect =
  | { readonly type: 'ping'; readonly conn: string }
  | { readonly type: 'phase'; readonly conn: string; readonly from: string; readonly to: string }
  | { readonly type: 'authenticated'; readonly conn: string }
  | { readonly type: 'auth-failed'; readonly conn: string; readonly detail: string }
  | { readonly type: 'identity'; readonly conn: string; readonly identity: string }
  | { readonly type: 'count'; readonly metric: 'registrations'; readonly result: RegistrationResult }
  | { readonly type: 'count'; readonly metric: 'joins'; readonly result: JoinResult }
  /** The list changed (for the snapshot read model and the servers gauge). */
  | { readonly type: 'list'; readonly change: 'listed' | 'refreshed' | 'unlisted'; readonly serverId: string; readonly servers: number }
  | ClusterEffect;

/** A core `reply` that answers a call (a join). */
export type CallReply = Extract<CoreEffect<TimerKey>, { type: 'reply' }> & { readonly call: string };

export type WorldEffect = CoreEffect<TimerKey> | GamelistEffect;

export function initialWorld(): GamelistWorld {
  return { peers: new Map(), listed: new Map(), held: new Set(), perIp: new Map(), reserved: new Map(), joins: new Map(), convs: new Set(), nextRequestId: 1n, cluster: initialCluster() };
}

/** What world-cluster.ts emits is a world effect (a compile-time check). */
type IsWorldEffect<T extends WorldEffect> = T;
export type ClusterWorldEffect = IsWorldEffect<ClusterFx>;
