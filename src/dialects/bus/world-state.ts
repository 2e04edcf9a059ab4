/**
 * The bus world's state (and the empty world), its events and its effects; the step is in world.ts.
 */
import type { GoneWhy } from '../../core/peer-log.js';
import type { CoreEffect, TimerEvent } from '../../core/runtime.js';
import type { Rate, TokenBucket } from '../../core/ratelimit.js';
import type { DisconnectReason, ExpectReply } from '../../protocols/bus/messages.js';
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
}

export interface Service {
  readonly conn: string;
  state: ConnState;
  readonly headerToken: string | undefined;
  name: string | undefined;
  identified: boolean;
  /** Groups it is in (made on IDENTIFY). */
  groups: Set<string> | undefined;
  /** `"source":"<id>"}` as bytes, made the first time this service sends an EVENT or REPLY. */
  sourceTail: Buffer | undefined;
  /**
   * Pending requests this service was asked and has not answered, by request id, oldest
   * first. Its own map: several requesters may use the same id towards it.
   */
  asked: Map<string, Request[]> | undefined;
  /** The sender's EVENT rate limit: count and bytes (made on its first EVENT). */
  events: TokenBucket | undefined;
  eventBytes: TokenBucket | undefined;
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
  readonly replied: Set<string>;
  /** Receivers that left before answering (made when the first one leaves). */
  gone: Set<string> | undefined;
  expected: number;
  /** GROUP/GLOBAL collection (REPLY_END at the end), as opposed to one DIRECT answer. */
  readonly collect: boolean;
  readonly startedAt: number;
  readonly deadline: number;
  /** The event as the requester named its target (for NO_ROUTE). */
  readonly target: 'GLOBAL' | 'GROUP' | 'DIRECT';
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
  readonly heartbeats: Map<string, { at: number }>;
  /** When each shared timer is set to fire (null: not set). */
  readonly armed: Record<TimerKey, number | null>;
  /** EVENTs routed since the metrics last read them, by intent. */
  readonly routed: Record<'GLOBAL' | 'GROUP' | 'DIRECT', number>;
  /** The request the frame being handled created (a receiver cut while it is delivered was never asked). */
  routing: Request | undefined;
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
    heartbeats: new Map(),
    armed: { identify: null, requests: null, heartbeat: null },
    routed: { GLOBAL: 0, GROUP: 0, DIRECT: 0 },
    routing: undefined,
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
  | TimerEvent<TimerKey>;

/** The bus's own effects; the dialect's glue runs them. */
export type BusEffect =
  /** DISCONNECT (sent past the backlog), then the close code of `reason`. */
  | { readonly type: 'disconnect'; readonly conn: string; readonly reason: DisconnectReason; readonly detail?: string | undefined }
  | { readonly type: 'identified'; readonly conn: string; readonly identity: string }
  | { readonly type: 'why'; readonly conn: string; readonly why: GoneWhy }
  | { readonly type: 'phase'; readonly conn: string; readonly from: string; readonly to: string }
  | { readonly type: 'count'; readonly metric: 'noRoute' | 'rateLimited' | 'repliesDropped' }
  | { readonly type: 'observe'; readonly outcome: 'complete' | 'timeout' | 'gone'; readonly seconds: number };

/** Relayed frames are the sender's bytes with `source` spliced in (see `relayed`). */
export type Eff = CoreEffect<TimerKey, string | Buffer> | BusEffect;
