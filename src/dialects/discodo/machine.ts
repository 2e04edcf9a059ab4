import {
  ClientOp,
  CloseCodes,
  decode,
  decodeDiscordEvent,
  decodeIdentify,
  encode,
  guildIdOf,
  PLAYER_OPS,
  Traceback,
  TracebackMessage,
  type DiscordEvent,
  type IdentifyData,
  type Snowflake,
} from '../../protocols/discodo/messages.js';

/**
 * One discodo socket's protocol state, as a pure function:
 * (state, event) → (state, effects). It checks the password verdict, decodes frames,
 * gates ops on IDENTIFY and watches for silence. What needs the bot's session (voice
 * clients, resume) comes out as effects for the runtime.
 */

export type Phase = 'connecting' | 'open' | 'identified' | 'closed';

export interface ConnState {
  readonly phase: Phase;
  /** When the last frame arrived (or the socket opened). */
  readonly lastFrameAt: number;
}

export interface MachineConfig {
  readonly heartbeatInterval: number;
  readonly handshakeTimeout: number;
  readonly version: string;
}

export type DiscodoEvent =
  | { readonly type: 'open'; readonly now: number; readonly forbidden?: string | undefined }
  | { readonly type: 'frame'; readonly now: number; readonly data: Buffer; readonly binary: boolean }
  | { readonly type: 'deadline'; readonly now: number };

export type Effect =
  | { readonly type: 'send'; readonly frame: string }
  | { readonly type: 'close'; readonly code: number; readonly reason: string }
  /** (Re)arm the silence deadline, `ms` from now. */
  | { readonly type: 'arm'; readonly ms: number }
  | { readonly type: 'identify'; readonly data: IdentifyData }
  | { readonly type: 'discord-event'; readonly event: DiscordEvent }
  | { readonly type: 'vc-destroy'; readonly op: string; readonly guildId: Snowflake }
  | { readonly type: 'query'; readonly op: 'getState' | 'getQueue'; readonly guildId: Snowflake }
  | { readonly type: 'status' };

export interface Step {
  readonly state: ConnState;
  readonly effects: readonly Effect[];
}

export function initialState(now: number): ConnState {
  return { phase: 'connecting', lastFrameAt: now };
}

const stay = (state: ConnState, ...effects: Effect[]): Step => ({ state, effects });

function close(state: ConnState, code: number, reason: string): Step {
  return { state: { ...state, phase: 'closed' }, effects: [{ type: 'close', code, reason }] };
}

export function step(state: ConnState, event: DiscodoEvent, cfg: MachineConfig): Step {
  if (state.phase === 'closed') return stay(state);
  switch (event.type) {
    case 'open': {
      if (state.phase !== 'connecting') return stay(state);
      if (event.forbidden !== undefined) {
        return {
          state: { phase: 'closed', lastFrameAt: event.now },
          effects: [
            { type: 'send', frame: encode.forbidden(event.forbidden) },
            { type: 'close', code: CloseCodes.FORBIDDEN, reason: 'forbidden' },
          ],
        };
      }
      return {
        state: { phase: 'open', lastFrameAt: event.now },
        effects: [
          { type: 'send', frame: encode.hello(cfg.heartbeatInterval, cfg.version) },
          { type: 'arm', ms: cfg.handshakeTimeout },
        ],
      };
    }
    case 'deadline': {
      const idle = event.now - state.lastFrameAt;
      if (idle >= cfg.handshakeTimeout) return close(state, CloseCodes.TIMEOUT, 'handshake timeout: nothing received');
      return stay(state, { type: 'arm', ms: cfg.handshakeTimeout - idle });
    }
    case 'frame':
      return onFrame({ ...state, lastFrameAt: event.now }, event);
  }
}

function onFrame(state: ConnState, event: Extract<DiscodoEvent, { type: 'frame' }>): Step {
  if (state.phase === 'connecting') return stay(state);
  if (event.binary) return close(state, CloseCodes.MALFORMED, 'binary frames are not accepted');
  const res = decode(event.data.toString('utf8'));
  if (!res.ok) return close(state, CloseCodes.MALFORMED, res.detail);
  const { op, d, rawD } = res.env;

  if (op === ClientOp.HEARTBEAT) return stay(state, { type: 'send', frame: encode.heartbeatAck(rawD) });

  if (op === ClientOp.IDENTIFY) {
    if (state.phase === 'identified') {
      return stay(state, { type: 'send', frame: encode.traceback(op, Traceback.ALREADY_IDENTIFIED, TracebackMessage.ALREADY_IDENTIFIED) });
    }
    const id = decodeIdentify(d);
    if (!id.ok) return stay(state, { type: 'send', frame: encode.traceback(op, Traceback.BAD_REQUEST, id.detail) });
    return { state: { ...state, phase: 'identified' }, effects: [{ type: 'identify', data: id.value }] };
  }

  if (state.phase !== 'identified') {
    return stay(state, { type: 'send', frame: encode.traceback(op, Traceback.NOT_IDENTIFIED, TracebackMessage.NOT_IDENTIFIED) });
  }

  const guildId = guildIdOf(d);
  switch (op) {
    case ClientOp.GET_STATUS:
      return stay(state, { type: 'status' });
    case ClientOp.DISCORD_EVENT: {
      const ev = decodeDiscordEvent(d);
      if (!ev.ok) return stay(state, { type: 'send', frame: encode.traceback(op, Traceback.BAD_REQUEST, ev.detail) });
      return stay(state, { type: 'discord-event', event: ev.value });
    }
    case ClientOp.VC_DESTROY:
    case ClientOp.getState:
    case ClientOp.getQueue: {
      if (guildId === undefined) {
        return stay(state, { type: 'send', frame: encode.traceback(op, Traceback.BAD_REQUEST, `${op} needs "d.guild_id"`) });
      }
      return op === ClientOp.VC_DESTROY
        ? stay(state, { type: 'vc-destroy', op, guildId })
        : stay(state, { type: 'query', op, guildId });
    }
    default: {
      const frame = PLAYER_OPS.has(op)
        ? encode.traceback(op, Traceback.NOT_SUPPORTED, `Muster keeps voice sessions only and plays no audio: ${op} is not supported.`, guildId)
        : encode.traceback(op, Traceback.UNKNOWN_OP, `Unknown op ${JSON.stringify(op)}.`, guildId);
      return stay(state, { type: 'send', frame });
    }
  }
}
