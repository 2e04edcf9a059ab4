import {
  decode,
  DisconnectReason,
  encode,
  Op,
  type BusMessage,
  type IdentifyData,
} from '../../protocols/bus/messages.js';

/**
 * One bus connection's protocol state, as a pure function:
 * (state, event) → (state, effects). The runtime feeds it frames and deadlines and
 * carries out the effects; nothing here touches a socket or a clock.
 */

export type Phase = 'awaiting' | 'identified' | 'closed';

export interface ConnState {
  readonly phase: Phase;
}

export interface MachineConfig {
  readonly token: string;
  readonly maxMessageBytes: number;
  /** Largest frame before IDENTIFY succeeds (absent: maxMessageBytes only). */
  readonly preAuthMaxBytes?: number;
  readonly heartbeatInterval: number;
  /** Compares secrets in constant time. */
  readonly secretEquals: (a: string, b: string) => boolean;
}

export type BusEvent =
  | { readonly type: 'frame'; readonly data: Buffer; readonly binary: boolean; readonly headerToken?: string | undefined }
  | { readonly type: 'identify-deadline' }
  | { readonly type: 'heartbeat-tick'; readonly now: number; readonly lastSeen: number };

type FrameEvent = Extract<BusEvent, { type: 'frame' }>;
export type EventOrReply = Extract<BusMessage, { op: 0 | 5 }>;

export type Effect =
  | { readonly type: 'send'; readonly frame: string }
  | { readonly type: 'disconnect'; readonly reason: DisconnectReason; readonly detail?: string }
  | { readonly type: 'register'; readonly data: IdentifyData }
  | { readonly type: 'route'; readonly msg: Extract<BusMessage, { op: 0 }> }
  | { readonly type: 'reply'; readonly msg: Extract<BusMessage, { op: 5 }> }
  | { readonly type: 'goodbye' };

export interface Step {
  readonly state: ConnState;
  readonly effects: readonly Effect[];
}

export const initialState: ConnState = { phase: 'awaiting' };

const closed: ConnState = { phase: 'closed' };
const identified: ConnState = { phase: 'identified' };

function disconnect(reason: DisconnectReason, detail?: string): Step {
  return { state: closed, effects: [detail === undefined ? { type: 'disconnect', reason } : { type: 'disconnect', reason, detail }] };
}

function stay(state: ConnState, ...effects: Effect[]): Step {
  return { state, effects };
}

export function step(state: ConnState, event: BusEvent, cfg: MachineConfig): Step {
  if (state.phase === 'closed') return stay(state);
  switch (event.type) {
    case 'identify-deadline':
      return state.phase === 'awaiting' ? disconnect(DisconnectReason.IDENTIFY_TIMEOUT) : stay(state);
    case 'heartbeat-tick':
      if (state.phase !== 'identified') return stay(state);
      if (event.now - event.lastSeen >= 2 * cfg.heartbeatInterval) return disconnect(DisconnectReason.PING_TIMEOUT);
      return stay(state, { type: 'send', frame: encode.ping() });
    case 'frame':
      return onFrame(state, event, cfg);
  }
}

/** A frame's checks and decode, shared by `step` and `routable`: the message, or the disconnect it earns. */
function decodeFrame(state: ConnState, event: FrameEvent, cfg: MachineConfig): BusMessage | Step {
  if (state.phase === 'awaiting' && cfg.preAuthMaxBytes !== undefined && event.data.length > cfg.preAuthMaxBytes) {
    return disconnect(DisconnectReason.MESSAGE_TOO_BIG, `a frame before IDENTIFY may be at most ${cfg.preAuthMaxBytes} bytes`);
  }
  if (event.data.length > cfg.maxMessageBytes) {
    return disconnect(DisconnectReason.MESSAGE_TOO_BIG, `a frame may be at most ${cfg.maxMessageBytes} bytes`);
  }
  if (event.binary) return disconnect(DisconnectReason.BAD_MESSAGE, 'binary frames are not accepted; send JSON text');
  const res = decode(event.data.toString('utf8'));
  return res.ok ? res.msg : disconnect(DisconnectReason.BAD_MESSAGE, res.detail);
}

/**
 * The step for the common case, without its step and effect objects: a frame from an
 * identified service that is an EVENT or a REPLY, whose only outcome is `route` or
 * `reply` with the message (the state stays as it is). Returns that message, or
 * `undefined` for any other frame, which `step` then handles (the bench's P1 hot path).
 */
export function routable(state: ConnState, event: FrameEvent, cfg: MachineConfig): EventOrReply | undefined {
  if (state.phase !== 'identified') return undefined;
  const msg = decodeFrame(state, event, cfg);
  return 'op' in msg && (msg.op === Op.EVENT || msg.op === Op.REPLY) ? msg : undefined;
}

function onFrame(state: ConnState, event: FrameEvent, cfg: MachineConfig): Step {
  const msg = decodeFrame(state, event, cfg);
  if (!('op' in msg)) return msg;

  if (state.phase === 'awaiting') {
    switch (msg.op) {
      case Op.IDENTIFY: {
        const given = msg.data.token ?? event.headerToken;
        if (given === undefined || !cfg.secretEquals(given, cfg.token)) return disconnect(DisconnectReason.IDENTIFY_FAILED);
        return { state: identified, effects: [{ type: 'register', data: msg.data }] };
      }
      case Op.PING:
        return stay(state, { type: 'send', frame: encode.pong() });
      default:
        return disconnect(DisconnectReason.NOT_IDENTIFIED);
    }
  }

  switch (msg.op) {
    case Op.EVENT:
      return stay(state, { type: 'route', msg });
    case Op.REPLY:
      return stay(state, { type: 'reply', msg });
    case Op.PING:
      return stay(state, { type: 'send', frame: encode.pong() });
    case Op.PONG:
      return stay(state);
    case Op.DISCONNECT:
      return { state: closed, effects: [{ type: 'goodbye' }] };
    case Op.IDENTIFY:
      return disconnect(DisconnectReason.ALREADY_IDENTIFIED, 'this connection has already identified');
  }
}
