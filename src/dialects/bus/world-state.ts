/**
 * The bus world's state (and the empty world), its events and its effects; the step is in world.ts.
 */
import type { GoneWhy } from '../../core/peer-log.js';
import { BeatQueue } from './beats.js';
import type { CoreEffect, TimerEvent } from '../../core/runtime.js';
import type { Rate, TokenBucket } from '../../core/ratelimit.js';
import type { DisconnectReason, ExpectReply, IdentifyData } from '../../protocols/bus/messages.js';
import type { ConnState, MachineConfig } from './machine.js';

/**
 * The bus world, as a pure step: every connection's protocol state, the groups, the
 * pending requests and who was asked what. The runtime feeds it frames, closes and
 * deadlines; it answers with effects (frames to a connection, deliveries through the
 * Broker, timers, log lines, metrics). Its state is updated in place (no map is copied
 * per frame: this is the bench's P1 hot path). Time comes in with each event; a
 * connection's last activity is read through `lastSeen` (the socket layer keeps it).
 */

export interface BusWorldConfig {
  machine: MachineConfig;
  readonly heartbeatInterval: number;
  readonly requestTimeout: number;
  readonly identifyTimeout: number;
  readonly maxBufferedBytes: number;
  /** Whether any EVENT rate limit is on, and the limits. */
  readonly limited: boolean;
  readonly eventRate: Rate;
  readonly byteRate: Rate;
  /** When a connection was last heard from (frame or pong). */
  readonly lastSeen: (conn: string) => number;
  /**
   * Names are claimed cluster-wide before IDENTIFY succeeds (cluster mode: a `claim`
   * effect, answered by a `claimed` event). False with one process: the world's own
   * maps decide at once.
   */
  readonly claimNames?: boolean;
}

/** An IDENTIFY with a name, waiting for the cluster-wide claim (cluster mode). */
export interface Claim {
  readonly data: IdentifyData;
  /** Frames that came meanwhile, handled in order once the claim is answered. */
  readonly held: Array<{ readonly data: Buffer; readonly binary: boolean }>;
}

export interface Service {
  readonly conn: string;
  /**
   * Where it is connected: undefined for this instance; otherwise another instance's id,
   * and this entry is a replica of a service there (cluster mode; see world-cluster.ts).
   */
  readonly instance: string | undefined;
  state: ConnState;
  readonly headerToken: string | undefined;
  name: string | undefined;
  identified: boolean;
  /** Groups it is in (made on IDENTIFY). */
  groups: Set<string> | undefined;
  /** `"source":"<id>"}` as bytes, made the first time this service sends an EVENT or REPLY. */
  sourceTail: Buffer | undefined;
  /** The Broker's target for a delivery to it (this instance's services), made on its first delivery. */
  target: { readonly to: 'conn'; readonly conn: string } | undefined;
  /**
   * Pending requests this service was asked and has not answered, by request id, oldest
   * first. Its own map: several requesters may use the same id towards it.
   */
  asked: Map<string, Request[]> | undefined;
  /** The sender's EVENT rate limit: count and bytes (made on its first EVENT). */
  events: TokenBucket | undefined;
  eventBytes: TokenBucket | undefined;
  /** Set while its name is being claimed cluster-wide; `claimed` once it holds the claim. */
  claim?: Claim | undefined;
  claimed?: boolean;
}

export interface Request {
  /** `<requester>/<id>`: the requester's connection id is server-made and has no "/". */
  readonly key: string;
  readonly requester: string;
  /** The request id, as the requester chose it (unique only per requester). */
  readonly id: string;
  /** The request's intent, for the NO_ROUTE answer when a DIRECT recipient leaves. */
  readonly identifier: string | undefined;
  readonly want: ExpectReply;
  /** Receivers still expected to answer, or who answered. */
  readonly recipients: Set<string>;
  /** Replies received so far. */
  answers: number;
  /**
   * A collection's receivers who answered (made on the first reply). A DIRECT request
   * needs none: its one reply ends it.
   */
  replied: Set<string> | undefined;
  /** Receivers that left before answering (made when the first one leaves). */
  gone: Set<string> | undefined;
  expected: number;
  /** GROUP/GLOBAL collection (REPLY_END at the end), as opposed to one DIRECT answer. */
  readonly collect: boolean;
  readonly startedAt: number;
  readonly deadline: number;
  /** The event as the requester named its target (for NO_ROUTE). */
  readonly target: 'GLOBAL' | 'GROUP' | 'DIRECT';
  /**
   * Set when the requester is on another instance (this id): this entry only records which
   * services here were asked, so that their REPLYs go back there. The requester's own
   * instance keeps the request proper (its timeout, REPLY_END).
   */
  readonly origin: string | undefined;
}

export type TimerKey = 'identify' | 'requests' | 'heartbeat';

export interface BusWorld {
  now: number;
  readonly services: Map<string, Service>;
  /** Identified services by id (= connection id), in the order they identified. */
  readonly byId: Map<string, Service>;
  readonly names: Map<string, Service>;
  readonly groups: Map<string, Set<string>>;
  /** Pending requests by key, oldest first (one timeout for all, so also by deadline). */
  readonly pending: Map<string, Request>;
  /** Connections that have not identified, by their identify deadline, oldest first. */
  readonly identifying: Map<string, number>;
  /** Identified services' next heartbeat, in tick order. */
  readonly heartbeats: BeatQueue;
  /** When each shared timer is set to fire (null: not set). */
  readonly armed: Record<TimerKey, number | null>;
  /** EVENTs routed since the metrics last read them, by intent. */
  readonly routed: Record<'GLOBAL' | 'GROUP' | 'DIRECT', number>;
  /** The request the frame being handled created (a receiver cut while it is delivered was never asked). */
  routing: Request | undefined;
  /** Replicas of services on other instances, by instance (cluster mode). */
  readonly remote: Map<string, Set<string>>;
  /** Names being claimed cluster-wide, and by which connection here (cluster mode). */
  readonly claims: Map<string, string>;
}

export function initialWorld(): BusWorld {
  return {
    now: 0,
    services: new Map(),
    byId: new Map(),
    names: new Map(),
    groups: new Map(),
    pending: new Map(),
    identifying: new Map(),
    heartbeats: new BeatQueue(),
    armed: { identify: null, requests: null, heartbeat: null },
    routed: { GLOBAL: 0, GROUP: 0, DIRECT: 0 },
    routing: undefined,
    remote: new Map(),
    claims: new Map(),
  };
}

export type WorldEvent =
  | { readonly type: 'open'; readonly now: number; readonly conn: string; readonly headerToken: string | undefined }
  /** Also the machine's frame event (no copy per frame): hence `headerToken`. */
  | { readonly type: 'frame'; readonly now: number; readonly conn: string; readonly data: Buffer; readonly binary: boolean; readonly headerToken: string | undefined }
  | { readonly type: 'closed'; readonly now: number; readonly conn: string }
  /** The socket layer found it not reading (`during`: while a frame of another was being handled). */
  | { readonly type: 'slow'; readonly now: number; readonly conn: string; readonly buffered: number; readonly during: boolean }
  | { readonly type: 'kick'; readonly now: number; readonly conn: string }
  | { readonly type: 'goodbye'; readonly now: number; readonly conn: string }
  | { readonly type: 'shutdown'; readonly now: number }
  /** A message from the bus on another instance (cluster mode). */
  | { readonly type: 'remote'; readonly now: number; readonly from: string; readonly msg: ClusterMsg }
  /** Another instance came up (or was seen again) or went away. */
  | { readonly type: 'peer'; readonly now: number; readonly instance: string; readonly up: boolean }
  /** The answer to a `claim` effect: the name is now `conn`'s, another's, or Redis could not say. */
  | { readonly type: 'claimed'; readonly now: number; readonly conn: string; readonly name: string; readonly outcome: ClaimOutcome }
  | TimerEvent<TimerKey>;

/** The bus's own effects; the dialect's glue runs them. */
export type BusEffect =
  /** DISCONNECT (sent past the backlog), then the close code of `reason`. */
  | { readonly type: 'disconnect'; readonly conn: string; readonly reason: DisconnectReason; readonly detail?: string | undefined }
  | { readonly type: 'identified'; readonly conn: string; readonly identity: string }
  | { readonly type: 'why'; readonly conn: string; readonly why: GoneWhy }
  | { readonly type: 'phase'; readonly conn: string; readonly from: string; readonly to: string }
  | { readonly type: 'count'; readonly metric: 'noRoute' | 'rateLimited' | 'repliesDropped' }
  | { readonly type: 'observe'; readonly outcome: 'complete' | 'timeout' | 'gone'; readonly seconds: number }
  /** A message for the bus on instance `to`, or (`to: null`) on every other instance. */
  | { readonly type: 'cluster'; readonly to: string | null; readonly msg: ClusterMsg }
  /** Claim `name` cluster-wide for `conn` (answered by a `claimed` event); release it. */
  | { readonly type: 'claim'; readonly conn: string; readonly name: string }
  | { readonly type: 'release'; readonly conn: string; readonly name: string };

export type ClaimOutcome = 'ok' | 'taken' | 'unavailable';

/** A service as its instance announces it to the others. */
export interface ServiceInfo {
  readonly id: string;
  readonly name?: string | undefined;
  readonly groups: readonly string[];
}

/**
 * What the bus on one instance tells the bus on another (cluster mode). Frames are the
 * relayed bytes (with `source`), as they go to the receiving service.
 */
export type ClusterMsg =
  /** A service identified here / left here. */
  | { readonly t: 'up'; readonly svc: ServiceInfo }
  | { readonly t: 'down'; readonly id: string }
  /** Every service here (replaces what the receiver held of this instance); `ask`: send yours back. */
  | { readonly t: 'sync'; readonly services: readonly ServiceInfo[]; readonly ask: boolean }
  /** `requester` asks the receiver's services `to` (request `id`): deliver `frame`, send their REPLYs back. */
  | { readonly t: 'ask'; readonly requester: string; readonly id: string; readonly to: readonly string[]; readonly collect: boolean; readonly frame: Buffer }
  /** `svc`, asked by `requester` (request `id`), answered with `frame`. */
  | { readonly t: 'reply'; readonly svc: string; readonly requester: string; readonly id: string; readonly frame: Buffer }
  /** `svc`, asked by `requester` (request `id`), has gone (or was not there) before answering. */
  | { readonly t: 'gone'; readonly svc: string; readonly requester: string; readonly id: string };

/** Relayed frames are the sender's bytes with `source` spliced in (see `relayed`). */
export type Eff = CoreEffect<TimerKey, string | Buffer> | BusEffect;

/** Counts on this instance (replicas of services elsewhere not included but in `groups`). */
export function worldSummary(w: BusWorld): { services: number; connections: number; groups: number; pendingRequests: number } {
  return { services: w.byId.size - remoteCount(w), connections: w.services.size, groups: w.groups.size, pendingRequests: w.pending.size };
}

/** Replicas of services on other instances. */
export function remoteCount(w: BusWorld): number {
  let n = 0;
  for (const ids of w.remote.values()) n += ids.size;
  return n;
}

/** Sets a shared timer unless it is set already (a timer that fires early re-arms itself). */
/** The Broker's target for a delivery to `svc` on this instance (one object per service, made on first use). */
export function connTarget(svc: Service): { readonly to: 'conn'; readonly conn: string } {
  return (svc.target ??= { to: 'conn', conn: svc.conn });
}

export function arm(w: BusWorld, out: Eff[], key: TimerKey, at: number): void {
  if (w.armed[key] !== null) return;
  w.armed[key] = at;
  out.push({ type: 'timer', key, at });
}
