import {
  decodeFromGameServer,
  encodeRegistrationError,
  GamelistClose,
  MessageType,
  RegistrationError,
  type RegisterMessage,
  type ResponseMessage,
} from '../../protocols/gamelist/messages.js';

/**
 * One game server socket's protocol state, as a pure function:
 * (state, event) → (state, effects). The runtime feeds it frames, pongs and
 * deadlines, and carries out the effects. What needs the whole list (limits,
 * server ids, the snapshot) is the runtime's; this decides everything that one
 * socket's history decides: the close rules, the token check and the failure count,
 * and the ping/pong deadline.
 */

export type Phase = 'open' | 'closed';

export interface ConnState {
  readonly phase: Phase;
  /** Registrations refused for an invalid token on this socket. */
  readonly failures: number;
  /** A ping is out and no pong has come back yet. */
  readonly awaitingPong: boolean;
  /** A registration with a valid regToken has arrived on this socket. */
  readonly authenticated?: boolean;
}

export interface MachineConfig {
  readonly regTokens: readonly string[];
  readonly maxFailedRegistrations: number;
  /** Largest frame before a valid regToken (absent: no cap here). */
  readonly preAuthMaxBytes?: number;
  /** Compares secrets in constant time. */
  readonly secretEquals: (a: string, b: string) => boolean;
}

export type GamelistEvent =
  | { readonly type: 'frame'; readonly data: Buffer; readonly binary: boolean }
  | { readonly type: 'ping-tick' }
  | { readonly type: 'pong' }
  | { readonly type: 'pong-deadline' };

export type Effect =
  | { readonly type: 'send'; readonly frame: string }
  | { readonly type: 'close'; readonly code: number; readonly reason: string }
  /** The token is valid: list or refresh the server (the runtime checks the limits). */
  | { readonly type: 'register'; readonly msg: RegisterMessage }
  | { readonly type: 'registration-refused'; readonly reason: 'invalid_token' }
  | { readonly type: 'response'; readonly msg: ResponseMessage }
  | { readonly type: 'ping' }
  | { readonly type: 'arm-pong-deadline' }
  | { readonly type: 'cancel-pong-deadline' };

export interface Step {
  readonly state: ConnState;
  readonly effects: readonly Effect[];
}

export const initialState: ConnState = { phase: 'open', failures: 0, awaitingPong: false };

function close(state: ConnState, code: number, reason: string, ...before: Effect[]): Step {
  return { state: { ...state, phase: 'closed' }, effects: [...before, { type: 'close', code, reason }] };
}

/** Every configured token is compared, so the time taken does not tell which one matched. */
export function tokenValid(given: string, tokens: readonly string[], eq: (a: string, b: string) => boolean): boolean {
  let ok = false;
  for (const t of tokens) if (eq(given, t)) ok = true;
  return ok;
}

export function step(state: ConnState, event: GamelistEvent, cfg: MachineConfig): Step {
  if (state.phase === 'closed') return { state, effects: [] };
  switch (event.type) {
    case 'ping-tick':
      if (state.awaitingPong) return { state, effects: [{ type: 'ping' }] };
      return { state: { ...state, awaitingPong: true }, effects: [{ type: 'ping' }, { type: 'arm-pong-deadline' }] };
    case 'pong':
      if (!state.awaitingPong) return { state, effects: [] };
      return { state: { ...state, awaitingPong: false }, effects: [{ type: 'cancel-pong-deadline' }] };
    case 'pong-deadline':
      if (!state.awaitingPong) return { state, effects: [] };
      return close(state, GamelistClose.GOING_AWAY, 'no pong within pongTimeout');
    case 'frame':
      return onFrame(state, event, cfg);
  }
}

function onFrame(state: ConnState, event: Extract<GamelistEvent, { type: 'frame' }>, cfg: MachineConfig): Step {
  if (!state.authenticated && cfg.preAuthMaxBytes !== undefined && event.data.length > cfg.preAuthMaxBytes) {
    return close(state, GamelistClose.MESSAGE_TOO_BIG, `a frame before a valid registration may be at most ${cfg.preAuthMaxBytes} bytes`);
  }
  if (event.binary) return close(state, GamelistClose.UNSUPPORTED_DATA, 'binary frames are not accepted; send JSON text');
  const res = decodeFromGameServer(event.data.toString('utf8'));
  if (!res.ok) return close(state, res.code, res.detail);
  const msg = res.msg;
  switch (msg.type) {
    case MessageType.REGISTER: {
      if (tokenValid(msg.regToken, cfg.regTokens, cfg.secretEquals)) {
        return { state: state.authenticated ? state : { ...state, authenticated: true }, effects: [{ type: 'register', msg }] };
      }
      const failures = state.failures + 1;
      const refuse: Effect[] = [
        { type: 'registration-refused', reason: 'invalid_token' },
        { type: 'send', frame: encodeRegistrationError(msg.id, RegistrationError.INVALID_TOKEN) },
      ];
      const next = { ...state, failures };
      if (failures >= cfg.maxFailedRegistrations) {
        return close(next, GamelistClose.POLICY_VIOLATION, `${failures} failed registrations`, ...refuse);
      }
      return { state: next, effects: refuse };
    }
    case -1:
    case -2:
      return { state, effects: [{ type: 'response', msg }] };
  }
}
