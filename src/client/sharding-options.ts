import type { InfoPayload, InitialisePayload } from '../protocols/sharding/messages.js';
import type { Range } from '../protocols/sharding/ranges.js';
import type { BackoffOptions } from './backoff.js';
import type { ClientClock } from './clock.js';
import type { WebSocketConstructor } from './socket.js';

/** ShardingControl's options and hook contexts, and the fencing timing it derives from INITIALISE. */

/** The time source: real timers by default; tests pass a manual clock. */
export type ControlClock = ClientClock;

export interface StartContext {
  /** Why: the MASTER's CONNECT or OFFLOAD, a COMMAND restart, or ACKs resuming after a fence. */
  readonly reason: 'connect' | 'offload' | 'command' | 'unfence';
  /** CONNECT marked this CONTROL as a standby. */
  readonly redundant: boolean;
  /** Aborted when every shard of this call is stopped before the call finishes. */
  readonly signal: AbortSignal;
}

export interface StopContext {
  readonly reason: string;
}


export interface ShardingControlOptions {
  /** ws(s)://host:port/sharding */
  url: string;
  /** The MASTER's key, sent as `Authorization: <key>`. */
  authorization: string;
  /** This CONTROL's unique name. */
  name: string;
  /** Relative weight in the assignment (default 1). */
  capacity?: number;
  /** Advertised features (default `["identify-queue"]`). */
  features?: string[];
  /** Start serving these shards (call `identifySlot` before each identifies). Resolve once they are connected. */
  start: (shards: Range[], ctx: StartContext) => void | Promise<void>;
  /** Stop serving these shards, at once. */
  stop: (shards: Range[], ctx: StopContext) => void | Promise<void>;
  /** Telemetry for INFO, sent every `infoInterval` ms (default: the heartbeat interval). */
  info?: () => InfoPayload | Record<string, unknown> | undefined | Promise<InfoPayload | Record<string, unknown> | undefined>;
  infoInterval?: number;
  /** Handles a COMMAND; by default restart_shard/restart_cluster stop and start the shards. */
  command?: (command: string, args: Record<string, unknown>) => void | Promise<void>;
  /**
   * Fencing timing. The MASTER sends its `heartbeat_grace`, `reconnect_window` and
   * `fence_margin` in INITIALISE, and those are used. These options override them only
   * when the result still fences before the MASTER offloads (before `heartbeatInterval +
   * heartbeatGrace` without ACK and before `reconnectWindow` disconnected, the MASTER's
   * numbers); otherwise the overrides are refused (an `error` event says so) and the
   * MASTER's timing is used. Against a MASTER that does not send them: these, or the
   * defaults 15000, 30000 and 5000.
   */
  heartbeatGrace?: number | undefined;
  reconnectWindow?: number | undefined;
  fenceMargin?: number | undefined;
  /** false to stay down after a drop; otherwise backoff settings (default 250 ms … 5 s, jittered). */
  reconnect?: false | BackoffOptions;
  /** Delay before retrying while the fleet is halted (close 4006). Default 5000. */
  haltedRetryDelay?: number;
  clock?: ControlClock;
  /** The WebSocket class (default `ws`); for proxies and tests. */
  WebSocket?: WebSocketConstructor;
  headers?: Record<string, string>;
}


/** Why a wait for an identify slot ended without a grant. */
export class IdentifySlotError extends Error {
  override readonly name = 'IdentifySlotError';
  constructor(
    readonly code: 'ABORTED' | 'STOPPED' | 'CLOSED',
    message: string,
  ) {
    super(message);
  }
}

/** The timing a CONTROL fences on (ms). */
export interface FenceTiming {
  readonly heartbeatGrace: number;
  readonly reconnectWindow: number;
  readonly fenceMargin: number;
  /** `master`: INITIALISE's; `override`: the options, checked against INITIALISE's; `local`: options or defaults (the MASTER sent none). */
  readonly source: 'master' | 'override' | 'local';
}

/**
 * The timing to fence on: the MASTER's, unless overrides still fence before the MASTER
 * offloads. `refused` names overrides that would not.
 */
export function fenceTiming(
  init: Pick<InitialisePayload, 'heartbeat_interval' | 'heartbeat_grace' | 'reconnect_window' | 'fence_margin'> | undefined,
  over: { heartbeatGrace?: number | undefined; reconnectWindow?: number | undefined; fenceMargin?: number | undefined },
): FenceTiming & { refused?: string } {
  const local = { heartbeatGrace: over.heartbeatGrace ?? 15_000, reconnectWindow: over.reconnectWindow ?? 30_000, fenceMargin: over.fenceMargin ?? 5_000 };
  if (!init || init.heartbeat_grace === undefined || init.reconnect_window === undefined || init.fence_margin === undefined) return { ...local, source: 'local' };
  const master = { heartbeatGrace: init.heartbeat_grace, reconnectWindow: init.reconnect_window, fenceMargin: init.fence_margin };
  if (over.heartbeatGrace === undefined && over.reconnectWindow === undefined && over.fenceMargin === undefined) return { ...master, source: 'master' };
  const t = {
    heartbeatGrace: over.heartbeatGrace ?? master.heartbeatGrace,
    reconnectWindow: over.reconnectWindow ?? master.reconnectWindow,
    fenceMargin: over.fenceMargin ?? master.fenceMargin,
  };
  const interval = init.heartbeat_interval;
  const ackFence = interval + t.heartbeatGrace - t.fenceMargin;
  const discFence = t.reconnectWindow - t.fenceMargin;
  const problems: string[] = [];
  if (ackFence >= interval + master.heartbeatGrace) problems.push(`without ACK it would fence after ${ackFence} ms, the MASTER offloads after ${interval + master.heartbeatGrace} ms`);
  if (discFence >= master.reconnectWindow) problems.push(`disconnected it would fence after ${discFence} ms, the MASTER offloads after ${master.reconnectWindow} ms`);
  if (problems.length > 0) {
    return { ...master, source: 'master', refused: `fencing overrides (heartbeatGrace, reconnectWindow, fenceMargin) refused: ${problems.join('; ')}; using the MASTER's timing` };
  }
  return { ...t, source: 'override' };
}
