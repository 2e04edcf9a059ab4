import {
  encode,
  isObj,
  readSnowflake,
  snowflakeKey,
  Traceback,
  TracebackMessage,
  type ResumedVoiceClient,
  type Snowflake,
} from '../../protocols/discodo/messages.js';

/**
 * A bot session's voice clients, as a pure function of the Discord voice events the
 * bot forwards: (state, event) → (state, effects). Nothing here touches a socket, a
 * clock or a media plane; the runtime sends the frames and calls the VoiceBackend.
 */

/** What Discord's VOICE_SERVER_UPDATE said: where the voice server is. */
export interface VoiceServer {
  readonly token: string | null;
  readonly endpoint: string | null;
}

export interface VoiceClientState {
  readonly id: string;
  /** In the form the creating event carried it. */
  readonly guildId: Snowflake;
  readonly channelId: Snowflake;
  /** Discord's voice `session_id` from VOICE_STATE_UPDATE. */
  readonly sessionId: string | null;
  readonly server: VoiceServer;
  readonly createdAt: number;
}

/** Half of a voice client: one of the two events has arrived. */
export interface PendingVoice {
  readonly guildId: Snowflake;
  readonly channelId: Snowflake | undefined;
  readonly sessionId: string | null;
  readonly server: VoiceServer | undefined;
}

export interface BotState {
  readonly userId: Snowflake;
  readonly shardId: Snowflake | null;
  /** By guild id text, in creation order. */
  readonly voiceClients: ReadonlyMap<string, VoiceClientState>;
  readonly pending: ReadonlyMap<string, PendingVoice>;
}

/** `moved`: the session moved to another instance of a cluster (which connects it there). */
export type DestroyReason = 'left' | 'requested' | 'expired' | 'shutdown' | 'moved';

export type VoiceEffect =
  | { readonly type: 'send'; readonly frame: string }
  | { readonly type: 'connect'; readonly vc: VoiceClientState }
  | { readonly type: 'update'; readonly vc: VoiceClientState }
  | { readonly type: 'disconnect'; readonly vc: VoiceClientState; readonly reason: DestroyReason };

export interface VoiceStep {
  readonly state: BotState;
  readonly effects: readonly VoiceEffect[];
}

export interface VoiceContext {
  readonly now: number;
  readonly newId: () => string;
}

/** Half-finished voice clients kept per session; past it the oldest is dropped. */
export const MAX_PENDING = 1000;

export function newBotState(userId: Snowflake, shardId: Snowflake | null): BotState {
  return { userId, shardId, voiceClients: new Map(), pending: new Map() };
}

const same = (state: BotState): VoiceStep => ({ state, effects: [] });

/** A DISCORD_EVENT. Only the identified user's voice events matter; the rest is ignored. */
export function onDiscordEvent(state: BotState, t: string, d: unknown, ctx: VoiceContext): VoiceStep {
  if (!isObj(d)) return same(state);
  switch (t) {
    case 'VOICE_STATE_UPDATE':
      return onVoiceState(state, d, ctx);
    case 'VOICE_SERVER_UPDATE':
      return onVoiceServer(state, d, ctx);
    default:
      return same(state);
  }
}

function onVoiceState(state: BotState, d: Record<string, unknown>, ctx: VoiceContext): VoiceStep {
  const user = readSnowflake(d.user_id);
  if (user === undefined || snowflakeKey(user) !== snowflakeKey(state.userId)) return same(state);
  const guildId = readSnowflake(d.guild_id);
  if (guildId === undefined) return same(state);
  const key = snowflakeKey(guildId);
  const sessionId = typeof d.session_id === 'string' ? d.session_id : null;
  const channelId = d.channel_id === null || d.channel_id === undefined ? null : readSnowflake(d.channel_id);
  if (channelId === undefined) return same(state);
  const vc = state.voiceClients.get(key);

  if (channelId === null) {
    // Left the voice channel: the voice client goes, and so does any half of one.
    const pending = without(state.pending, key);
    if (!vc) return same({ ...state, pending });
    return {
      state: { ...state, pending, voiceClients: without(state.voiceClients, key) },
      effects: [
        { type: 'send', frame: encode.vcDestroyed(guildId) },
        { type: 'disconnect', vc, reason: 'left' },
      ],
    };
  }

  if (vc) {
    const moved = snowflakeKey(vc.channelId) !== snowflakeKey(channelId);
    const newSession = sessionId !== null && sessionId !== vc.sessionId;
    const next: VoiceClientState = { ...vc, channelId, sessionId: sessionId ?? vc.sessionId };
    const effects: VoiceEffect[] = [];
    if (moved) effects.push({ type: 'send', frame: encode.vcChannelEdited(guildId, channelId) });
    const prev = state.pending.get(key);
    if (prev?.server !== undefined) return rejoined(state, key, { ...next, server: prev.server }, effects);
    // Half of a fresh pair: kept, so that a VOICE_SERVER_UPDATE that follows announces the client again.
    const half: PendingVoice = { guildId, channelId, sessionId: next.sessionId, server: undefined };
    if (moved || newSession) effects.push({ type: 'update', vc: next });
    return { state: { ...state, voiceClients: with_(state.voiceClients, key, next), pending: keepHalf(state.pending, key, half) }, effects };
  }

  const prev = state.pending.get(key);
  const half: PendingVoice = { guildId, channelId, sessionId: sessionId ?? prev?.sessionId ?? null, server: prev?.server };
  return complete(state, key, half, ctx);
}

function onVoiceServer(state: BotState, d: Record<string, unknown>, ctx: VoiceContext): VoiceStep {
  const guildId = readSnowflake(d.guild_id);
  if (guildId === undefined) return same(state);
  const key = snowflakeKey(guildId);
  const server: VoiceServer = {
    token: typeof d.token === 'string' ? d.token : null,
    endpoint: typeof d.endpoint === 'string' ? d.endpoint : null,
  };
  const vc = state.voiceClients.get(key);
  if (vc) {
    const next: VoiceClientState = { ...vc, server };
    if (state.pending.get(key)?.channelId !== undefined) return rejoined(state, key, next, []);
    // The voice server moved: a media plane would reconnect. The bot is told nothing, unless a
    // VOICE_STATE_UPDATE follows and makes this a fresh pair.
    const half: PendingVoice = { guildId, channelId: undefined, sessionId: null, server };
    return {
      state: { ...state, voiceClients: with_(state.voiceClients, key, next), pending: keepHalf(state.pending, key, half) },
      effects: [{ type: 'update', vc: next }],
    };
  }
  const prev = state.pending.get(key);
  const half: PendingVoice = { guildId: prev?.guildId ?? guildId, channelId: prev?.channelId, sessionId: prev?.sessionId ?? null, server };
  return complete(state, key, half, ctx);
}

/**
 * A fresh VOICE_STATE_UPDATE + VOICE_SERVER_UPDATE pair (either order) for a guild that
 * already has a voice client: the bot joined again, e.g. after a reconnect in which it
 * could not read RESUMED. It gets VC_CREATED again with the same id, so it holds a handle
 * (and can send VC_DESTROY); the backend hears of the new session and server.
 */
function rejoined(state: BotState, key: string, vc: VoiceClientState, effects: VoiceEffect[]): VoiceStep {
  return {
    state: { ...state, voiceClients: with_(state.voiceClients, key, vc), pending: without(state.pending, key) },
    effects: [...effects, { type: 'send', frame: encode.vcCreated(vc.guildId, vc.id) }, { type: 'update', vc }],
  };
}

/** Keeps a half, dropping the oldest past MAX_PENDING. */
function keepHalf(pending: ReadonlyMap<string, PendingVoice>, key: string, half: PendingVoice): ReadonlyMap<string, PendingVoice> {
  let out: ReadonlyMap<string, PendingVoice> = with_(pending, key, half);
  if (out.size > MAX_PENDING) out = without(out, out.keys().next().value as string);
  return out;
}

/** Creates the voice client once both halves are there; otherwise keeps the half. */
function complete(state: BotState, key: string, half: PendingVoice, ctx: VoiceContext): VoiceStep {
  if (half.channelId === undefined || half.server === undefined) {
    return same({ ...state, pending: keepHalf(state.pending, key, half) });
  }
  const vc: VoiceClientState = {
    id: ctx.newId(),
    guildId: half.guildId,
    channelId: half.channelId,
    sessionId: half.sessionId,
    server: half.server,
    createdAt: ctx.now,
  };
  return {
    state: { ...state, pending: without(state.pending, key), voiceClients: with_(state.voiceClients, key, vc) },
    effects: [
      { type: 'send', frame: encode.vcCreated(vc.guildId, vc.id) },
      { type: 'connect', vc },
    ],
  };
}

/** `VC_DESTROY {guild_id}`: answered with VC_DESTROYED, or the traceback VOICE_CLIENT_NOT_FOUND. */
export function destroyVoiceClient(state: BotState, op: string, guildId: Snowflake): VoiceStep {
  const key = snowflakeKey(guildId);
  const vc = state.voiceClients.get(key);
  if (!vc) {
    return {
      state,
      effects: [{ type: 'send', frame: encode.traceback(op, Traceback.VOICE_CLIENT_NOT_FOUND, TracebackMessage.VOICE_CLIENT_NOT_FOUND, guildId) }],
    };
  }
  return {
    state: { ...state, voiceClients: without(state.voiceClients, key), pending: without(state.pending, key) },
    effects: [
      { type: 'send', frame: encode.vcDestroyed(guildId) },
      { type: 'disconnect', vc, reason: 'requested' },
    ],
  };
}

/** `getState` / `getQueue`: an idle player's answer, or VOICE_CLIENT_NOT_FOUND. The guild id is echoed as asked. */
export function playerQuery(state: BotState, op: 'getState' | 'getQueue', guildId: Snowflake): string {
  const vc = state.voiceClients.get(snowflakeKey(guildId));
  if (!vc) return encode.traceback(op, Traceback.VOICE_CLIENT_NOT_FOUND, TracebackMessage.VOICE_CLIENT_NOT_FOUND, guildId);
  return op === 'getState' ? encode.idleState(vc.id, guildId, vc.channelId) : encode.emptyQueue(guildId);
}

/** Every voice client, released at once (expiry or shutdown). */
export function releaseAll(state: BotState, reason: DestroyReason): VoiceStep {
  const effects: VoiceEffect[] = [...state.voiceClients.values()].map((vc) => ({ type: 'disconnect', vc, reason }));
  return { state: { ...state, voiceClients: new Map(), pending: new Map() }, effects };
}

/**
 * One session's state from two holders (cluster mode: two instances handed over parts of
 * it): `a`'s voice clients and halves, then `b`'s for guilds `a` has none for.
 */
export function mergeBots(a: BotState, b: BotState): BotState {
  if (b.voiceClients.size === 0 && b.pending.size === 0) return a;
  const voiceClients = new Map(a.voiceClients);
  for (const [k, vc] of b.voiceClients) if (!voiceClients.has(k)) voiceClients.set(k, vc);
  let pending: ReadonlyMap<string, PendingVoice> = a.pending;
  for (const [k, half] of b.pending) if (!pending.has(k)) pending = keepHalf(pending, k, half);
  return { ...a, voiceClients, pending };
}

/** What RESUMED lists, in creation order. */
export function resumedList(state: BotState): ResumedVoiceClient[] {
  return [...state.voiceClients.values()].map((vc) => ({ guildId: vc.guildId, id: vc.id, channelId: vc.channelId }));
}

function with_<V>(m: ReadonlyMap<string, V>, k: string, v: V): Map<string, V> {
  const out = new Map(m);
  out.set(k, v);
  return out;
}

function without<V>(m: ReadonlyMap<string, V>, k: string): ReadonlyMap<string, V> {
  if (!m.has(k)) return m;
  const out = new Map(m);
  out.delete(k);
  return out;
}
