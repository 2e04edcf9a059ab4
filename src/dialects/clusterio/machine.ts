import { decodeEnvelope, idOf, type Envelope } from '../../protocols/clusterio/codec.js';
import {
  ClusterioClose,
  CloseReason,
  handshakeValidators,
  INBOUND,
  kindOf,
  PLUGIN_TYPE,
  pluginDataValidator,
  pluginResponseValidator,
  responseValidators,
  SESSION_CONTROL_TYPES,
  SESSION_FEATURE,
  type MessageKind,
  type Role,
  type Validator,
} from '../../protocols/clusterio/messages.js';

/**
 * One clusterio socket's protocol state, as a pure function:
 * (state, event) → (state, effects). It checks every frame (envelope, type, schema),
 * drives the handshake, numbers nothing and stores nothing: the runtime
 * (dialect.ts) numbers outbound frames, keeps sessions and the registry, and carries
 * out the effects. Deadlines (handshake, heartbeat) arrive as events.
 */

export type Phase = 'handshake' | 'authorizing' | 'ready' | 'closed';
export type Mode = 'seed' | 'session';

export interface LinkState {
  readonly phase: Phase;
  /** `session` once the client opted in (features ["session"]) or resumed. */
  readonly mode: Mode;
  readonly role: Role | undefined;
  /** Session mode: the last counted seq received from the client (duplicates are dropped). */
  readonly lastReceived: number;
  /** Session mode: when the client's last `heartbeat` arrived. */
  readonly lastHeartbeat: number;
}

export interface MachineConfig {
  /** ms */
  readonly heartbeatInterval: number;
  /** Largest frame (UTF-8 bytes) before the handshake is accepted (absent: no cap here). */
  readonly preAuthMaxBytes?: number;
}

export interface RegisterMessage {
  readonly role: Role;
  readonly token: string;
  readonly agent: string;
  readonly version: string;
  /** Slaves only. */
  readonly name: string;
  /** Slaves only: the canonical decimal id (every digit kept). */
  readonly id: string;
}

export type LinkEvent =
  /** A frame; `text` is undefined for a binary frame. */
  | { readonly type: 'frame'; readonly text: string | undefined; readonly now: number }
  /** The token was accepted; `ready` is the ready frame's data. */
  | { readonly type: 'authorized'; readonly role: Role; readonly ready: string; readonly now: number }
  | { readonly type: 'refused' }
  /** A resume was accepted: the session's receive counter carries on. */
  | { readonly type: 'resumed'; readonly role: Role; readonly lastReceived: number; readonly replayAfter: number; readonly now: number }
  | { readonly type: 'invalidated' }
  | { readonly type: 'tick'; readonly now: number; readonly lastSeen: number }
  | { readonly type: 'handshake-deadline' }
  /** The runtime found a message it cannot accept (e.g. a response to an unknown seq). */
  | { readonly type: 'violation'; readonly detail: string };

export type LinkEffect =
  /** Send a frame; the runtime numbers it (seq 0 for session-control frames in a session). */
  | { readonly type: 'send'; readonly frameType: string; readonly data: string }
  /** Send `close {reason}` and close the socket with `code`. */
  | { readonly type: 'close'; readonly code: number; readonly reason: string }
  /** The client said `close`: end its session and close the socket (1000), no frame back. */
  | { readonly type: 'hangup'; readonly reason: string }
  | { readonly type: 'ping' }
  | { readonly type: 'register'; readonly msg: RegisterMessage; readonly session: boolean }
  | { readonly type: 'resume'; readonly token: string; readonly lastSeq: number }
  /** A frame that arrived while the token was being checked: feed it again afterwards. */
  | { readonly type: 'defer'; readonly text: string | undefined }
  /** Session mode: the client acknowledged everything up to `lastSeq`. */
  | { readonly type: 'ack'; readonly lastSeq: number }
  /** Session mode, after `continue`: resend what the client missed. */
  | { readonly type: 'replay'; readonly after: number }
  /** A checked request, response or event for the master. */
  | { readonly type: 'deliver'; readonly env: Envelope; readonly kind: MessageKind; readonly plugin: boolean };

export interface Step {
  readonly state: LinkState;
  readonly effects: readonly LinkEffect[];
}

export const initialState: LinkState = { phase: 'handshake', mode: 'seed', role: undefined, lastReceived: 0, lastHeartbeat: 0 };

function stay(state: LinkState, ...effects: LinkEffect[]): Step {
  return { state, effects };
}

function close(state: LinkState, code: number, reason: string): Step {
  return { state: { ...state, phase: 'closed' }, effects: [{ type: 'close', code, reason }] };
}

function invalid(state: LinkState, detail: string): Step {
  return close(state, ClusterioClose.INVALID_MESSAGE, `Invalid message: ${detail}`);
}

function badHandshake(state: LinkState): Step {
  return close(state, ClusterioClose.POLICY_VIOLATION, CloseReason.INVALID_HANDSHAKE);
}

export function step(state: LinkState, event: LinkEvent, cfg: MachineConfig): Step {
  if (state.phase === 'closed') return stay(state);
  switch (event.type) {
    case 'frame':
      if (state.phase !== 'ready' && event.text !== undefined && cfg.preAuthMaxBytes !== undefined && Buffer.byteLength(event.text) > cfg.preAuthMaxBytes) {
        return close(state, ClusterioClose.MESSAGE_TOO_BIG, `${CloseReason.TOO_BIG_BEFORE_AUTH} (at most ${cfg.preAuthMaxBytes} bytes)`);
      }
      if (state.phase === 'handshake') return onHandshakeFrame(state, event.text);
      if (state.phase === 'authorizing') return stay(state, { type: 'defer', text: event.text });
      return onFrame(state, event.text, event.now);
    case 'authorized':
      if (state.phase !== 'authorizing') return stay(state);
      return {
        state: { ...state, phase: 'ready', role: event.role, lastReceived: 0, lastHeartbeat: event.now },
        effects: [{ type: 'send', frameType: 'ready', data: event.ready }],
      };
    case 'refused':
      return close(state, ClusterioClose.AUTHENTICATION_FAILED, CloseReason.AUTH_FAILED);
    case 'resumed':
      if (state.phase !== 'authorizing') return stay(state);
      return {
        state: { ...state, phase: 'ready', mode: 'session', role: event.role, lastReceived: event.lastReceived, lastHeartbeat: event.now },
        effects: [
          { type: 'send', frameType: 'continue', data: `{"last_seq":${event.lastReceived}}` },
          { type: 'replay', after: event.replayAfter },
        ],
      };
    case 'invalidated':
      if (state.phase !== 'authorizing') return stay(state);
      // The client registers anew on the same socket.
      return { state: { ...state, phase: 'handshake' }, effects: [{ type: 'send', frameType: 'invalidate', data: '{}' }] };
    case 'tick': {
      if (state.phase !== 'ready') return stay(state);
      const limit = 2 * cfg.heartbeatInterval;
      if (state.mode === 'seed') {
        if (event.now - event.lastSeen >= limit) return close(state, ClusterioClose.TIMEOUT, CloseReason.PING_TIMEOUT);
        return stay(state, { type: 'ping' });
      }
      // WebSocket pongs don't count for session clients: only heartbeat frames do.
      if (event.now - state.lastHeartbeat >= limit) return close(state, ClusterioClose.TIMEOUT, CloseReason.HEARTBEAT_TIMEOUT);
      return stay(state, { type: 'ping' }, { type: 'send', frameType: 'heartbeat', data: `{"last_seq":${state.lastReceived}}` });
    }
    case 'handshake-deadline':
      if (state.phase !== 'handshake' && state.phase !== 'authorizing') return stay(state);
      return close(state, ClusterioClose.POLICY_VIOLATION, CloseReason.HANDSHAKE_TIMEOUT);
    case 'violation':
      return invalid(state, event.detail);
  }
}

function onHandshakeFrame(state: LinkState, text: string | undefined): Step {
  if (text === undefined) return badHandshake(state);
  const res = decodeEnvelope(text, true);
  if (!res.ok) return badHandshake(state);
  const { type, data } = res.env;
  switch (type) {
    case 'register_slave':
    case 'register_control': {
      const v = handshakeValidators[type];
      if (!v.check(data)) return badHandshake(state);
      const d = data as { token: string; agent: string; version: string; name?: string; features?: string[] };
      const session = (d.features ?? []).includes(SESSION_FEATURE);
      const msg: RegisterMessage = {
        role: type === 'register_slave' ? 'slave' : 'control',
        token: d.token,
        agent: d.agent,
        version: d.version,
        name: d.name ?? '',
        id: type === 'register_slave' ? (idOf(res.env.tree.id) ?? '') : '',
      };
      return {
        state: { ...state, phase: 'authorizing', mode: session ? 'session' : 'seed' },
        effects: [{ type: 'register', msg, session }],
      };
    }
    case 'resume': {
      if (!handshakeValidators.resume.check(data)) return badHandshake(state);
      const d = data as { session_token: string; last_seq: number };
      return {
        state: { ...state, phase: 'authorizing', mode: 'session' },
        effects: [{ type: 'resume', token: d.session_token, lastSeq: d.last_seq }],
      };
    }
    case 'close':
      return { state: { ...state, phase: 'closed' }, effects: [{ type: 'hangup', reason: reasonOf(data) }] };
    default:
      return badHandshake(state);
  }
}

function reasonOf(data: Record<string, unknown>): string {
  return typeof data.reason === 'string' ? data.reason : 'closed by the client';
}

function onFrame(state: LinkState, text: string | undefined, now: number): Step {
  if (text === undefined) return invalid(state, 'binary frames are not accepted');
  const res = decodeEnvelope(text);
  if (!res.ok) return invalid(state, res.detail);
  const env = res.env;
  const { type, data, seq } = env;
  const role = state.role as Role;

  if (type === 'close') return { state: { ...state, phase: 'closed' }, effects: [{ type: 'hangup', reason: reasonOf(data) }] };

  if (state.mode === 'session') {
    if (type === 'heartbeat') {
      if (!handshakeValidators.heartbeat.check(data)) return invalid(state, `Validation failed for heartbeat: ${handshakeValidators.heartbeat.explain(data)}`);
      return { state: { ...state, lastHeartbeat: now }, effects: [{ type: 'ack', lastSeq: (data as { last_seq: number }).last_seq }] };
    }
    if (SESSION_CONTROL_TYPES.has(type) || type === 'register_slave' || type === 'register_control') {
      return invalid(state, `Unexpected ${type} on an established session`);
    }
    if (seq < 1) return invalid(state, `seq must be 1 or more in a session, not ${seq}`);
    // Already received before a reconnect: a duplicate, dropped.
    if (seq <= state.lastReceived) return stay(state);
  }

  const kind = kindOf(type);
  const plugin = PLUGIN_TYPE.test(type);
  let validator: Validator | undefined;
  if (plugin && kind !== undefined) {
    validator = kind === 'response' ? (responseValidators[type] ?? pluginResponseValidator) : pluginDataValidator;
  } else {
    validator = INBOUND[role].get(type);
  }
  if (!validator || kind === undefined) return invalid(state, `No validator for ${type} on ${role}-master`);
  if (!validator.check(data)) return invalid(state, `Validation failed for ${type}: ${validator.explain(data)}`);

  const next = state.mode === 'session' ? { ...state, lastReceived: seq } : state;
  return { state: next, effects: [{ type: 'deliver', env, kind, plugin }] };
}
