/**
 * The sharding world's types: configuration, state, events and effects of the pure
 * machine (machine.ts). Re-exported by machine.ts, which is the public surface.
 */
import type { JsonValue } from '../../../store/types.js';
import type { ControlFrame } from '../../../protocols/sharding/messages.js';
import type { Range } from '../../../protocols/sharding/ranges.js';
import type { CommandBody, RebalanceBody } from '../../../protocols/sharding/admin.js';
import { assertNever } from '../../../core/never.js';
import type { TimerEvent } from '../../../core/runtime.js';
import type { QueueState } from '../identify-queue.js';

export interface MachineConfig {
  readonly botToken: string;
  readonly shardCount: number;
  readonly maxConcurrency: number;
  readonly heartbeatInterval: number;
  readonly heartbeatGrace: number;
  readonly reconnectWindow: number;
  readonly startupDelay: number;
  readonly expectedControls: number;
  readonly redundancy: number;
  readonly startup: 'sequential' | 'parallel';
  readonly connectTimeout: number;
  readonly identifyWindow: number;
  /**
   * Added to `identifyWindow` between two grants of a bucket, so that gaps measured at
   * Discord's gateway (grant-to-IDENTIFY latency differs between CONTROLs) are never
   * shorter than the window. Absent: 0.
   */
  readonly identifyMargin?: number;
  readonly sessionStartLimit: number;
  readonly fenceMargin: number;
  readonly identifyTimeout: number;
  /** Length of the session-start budget period (24 h; shorter only in tests). */
  readonly budgetPeriod?: number;
}

export const IDENTIFY_QUEUE_FEATURE = 'identify-queue';



export type Phase = 'loading' | 'waiting' | 'starting' | 'running' | 'halted';
/** Progress of a shard on its owner: CONNECT/OFFLOAD sent, CONNECTING heard, CONNECTED heard. */
export type ShardWork = 'assigned' | 'connecting' | 'connected';
/** What the admin API shows for a shard. */
export type ShardState = 'unassigned' | 'pending' | ShardWork | 'disconnected' | 'halted';
/** What the admin API shows for a CONTROL. */
export type ControlState = 'waiting' | 'connecting' | 'ready' | 'standby' | 'disconnected';

/** Immutable: a step replaces the records it changes (see Tx.patch in world/tx.ts), so a step costs O(shards) pointers, not a deep copy. */
export interface ShardRec {
  readonly owner: string | null;
  readonly work: ShardWork;
  /** The incoming owner of a make-before-break, until it reports CONNECTED. */
  readonly target: string | null;
  /** The CONTROL whose start-up CONNECT will carry this shard. */
  readonly planned: string | null;
  /** Who owned it before it was lost (OFFLOAD `from`). */
  readonly lastOwner: string | null;
  /** When its owner was lost (for the failover-duration metric). */
  readonly lostAt: number | null;
}

export interface SocketRec {
  readonly id: string;
  readonly sessionId: string;
  control: string | null;
  readonly openedAt: number;
  closing: boolean;
}

export interface ControlRec {
  readonly name: string;
  sessionId: string;
  conn: string | null;
  capacity: number;
  features: string[];
  readonly order: number;
  /** Has had its CONNECT (or adopted or re-attached shards). */
  started: boolean;
  redundant: boolean;
  /** Shards its start-up CONNECT will carry, while it waits for its turn. */
  plan: number[] | null;
  planRedundant: boolean;
  /** A CONNECT or OFFLOAD is outstanding since then (connectTimeout runs). */
  awaitingSince: number | null;
  identifiedAt: number;
  /** Base of the heartbeat deadline: the last HEARTBEAT or the IDENTIFY. */
  hbBase: number;
  lastHeartbeat: number | null;
  disconnectedAt: number | null;
  /** The last INFO's `d`, as text (numbers verbatim). */
  info: string | null;
  infoAt: number | null;
}

export interface FleetState {
  phase: Phase;
  haltReason: string | null;
  haltedAt: number | null;
  readonly bootAt: number;
  /** startupDelay has passed with nobody connected: start at the first IDENTIFY. */
  startupDue: boolean;
  sockets: Map<string, SocketRec>;
  controls: Map<string, ControlRec>;
  shards: ShardRec[];
  /** Sequential start: CONTROLs waiting for their CONNECT, and the one being waited on. */
  sequence: string[];
  current: string | null;
  queue: QueueState;
  exhausted: boolean;
  orderSeq: number;
  /** Armed timers by timerId(key), with their key and due time. */
  timers: Map<string, ArmedTimer>;
}

/**
 * A deadline the machine arms: on a socket (IDENTIFY), on a CONTROL (heartbeat,
 * connectTimeout, reconnectWindow) or on the fleet (start-up delay, identify queue).
 */
export type TimerKey =
  | { readonly kind: 'identify'; readonly conn: string }
  | { readonly kind: 'heartbeat'; readonly control: string }
  | { readonly kind: 'connect'; readonly control: string }
  | { readonly kind: 'window'; readonly control: string }
  | { readonly kind: 'startup' }
  | { readonly kind: 'queue' };

export interface ArmedTimer {
  readonly key: TimerKey;
  readonly at: number;
}

/** A stable text identity of a timer key, for maps (never parsed back). */
export function timerId(key: TimerKey): string {
  switch (key.kind) {
    case 'identify':
      return `id:${key.conn}`;
    case 'heartbeat':
      return `hb:${key.control}`;
    case 'connect':
      return `ct:${key.control}`;
    case 'window':
      return `win:${key.control}`;
    case 'startup':
    case 'queue':
      return key.kind;
    default:
      return assertNever(key);
  }
}

export type AdminAction =
  | { readonly kind: 'halt' }
  | { readonly kind: 'resume' }
  /** Bodies are checked at the HTTP edge (protocols/sharding/admin.ts); `undefined`: no body. */
  | { readonly kind: 'rebalance'; readonly body: RebalanceBody | undefined }
  | { readonly kind: 'command'; readonly name: string; readonly body: CommandBody };

/**
 * A socket that was open and identified under an earlier leader, as its edge re-announces
 * it to a new leader (cluster mode): what the CONTROL is, and what it was told to serve.
 */
export interface AdoptedControl {
  readonly name: string;
  readonly capacity?: number;
  readonly features?: readonly string[];
  readonly shards: readonly Range[];
  readonly started: boolean;
  readonly redundant: boolean;
}

export type FleetEvent =
  | { readonly type: 'loaded'; readonly now: number; readonly fleet?: unknown; readonly assignment?: unknown; readonly budget?: unknown }
  | { readonly type: 'open'; readonly now: number; readonly conn: string; readonly sessionId: string }
  | { readonly type: 'message'; readonly now: number; readonly conn: string; readonly frame: ControlFrame }
  | { readonly type: 'malformed'; readonly now: number; readonly conn: string; readonly detail: string }
  | { readonly type: 'closed'; readonly now: number; readonly conn: string }
  | TimerEvent<TimerKey>
  | { readonly type: 'admin'; readonly now: number; readonly action: AdminAction }
  /**
   * Takeover: a socket that was open before this leader's term, re-announced by its edge.
   * No INITIALISE and no IDENTIFIED go out: the CONTROL had them from the old leader.
   */
  | { readonly type: 'adopt'; readonly now: number; readonly conn: string; readonly sessionId: string; readonly control?: AdoptedControl };

export type PersistKey = 'fleet' | 'assignment' | 'budget';

export type Effect =
  | { readonly type: 'send'; readonly conn: string; readonly frame: string }
  | { readonly type: 'close'; readonly conn: string; readonly code: number; readonly reason: string }
  | { readonly type: 'timer'; readonly key: TimerKey; readonly at: number | null }
  | { readonly type: 'persist'; readonly key: PersistKey; readonly value: JsonValue }
  | { readonly type: 'failover'; readonly seconds: number }
  | { readonly type: 'grant'; readonly shard: number; readonly control: string }
  | { readonly type: 'log'; readonly level: 'debug' | 'info' | 'warn' | 'error'; readonly msg: string; readonly data?: Record<string, unknown>; readonly peer?: string }
  | { readonly type: 'reply'; readonly status: number; readonly body: unknown };

export interface Step {
  readonly state: FleetState;
  readonly effects: readonly Effect[];
}
