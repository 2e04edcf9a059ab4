import type { CoreEffect, Stepped, TimerEvent } from '../../core/runtime.js';
import { encode, sessionKey, type IdentifyData, type ResumedForm } from '../../protocols/discodo/messages.js';
import type { ClusterMsg } from './cluster-wire.js';
import { initialState, step as connStep, type ConnState, type Effect as ConnEffect, type MachineConfig } from './machine.js';
import {
  destroyVoiceClient,
  newBotState,
  onDiscordEvent,
  playerQuery,
  releaseAll,
  resumedList,
  type BotState,
  type DestroyReason,
  type VoiceClientState,
  type VoiceStep,
} from './voice.js';
import { claimTimedOut, connClosed, identifyRemote, initialCluster, onPeer, onRemote, queueOp, shutdownClaims, takeOver, type ClusterState } from './world-cluster.js';

/**
 * The discodo world, as a pure step: every socket's protocol state (machine.ts), the
 * bot sessions keyed by user (and shard), their voice clients (voice.ts), resume and
 * takeover (across instances too: world-cluster.ts), the silence deadline and the
 * resume window as typed timers. The core
 * runtime feeds it socket events and deadlines and carries out what it returns; the
 * dialect (dialect.ts) only adds metrics, the voice backend calls and STATUS's load.
 *
 * The state is owned by the runtime and updated in place (its maps are not copied per
 * frame: a server holds thousands of sessions); the step does no I/O and reads no
 * clock, so the same events give the same state and effects.
 */

export interface WorldConfig extends MachineConfig {
  /** ms a closed socket's session and voice clients are kept for a resume. */
  readonly vcTimeout: number;
  readonly compat: ResumedForm;
  /** Voice client ids, and claim ids in cluster mode. */
  readonly newId: () => string;
  /** ms a claim for a session waits for an instance that does not answer (cluster mode; default 2000). */
  readonly claimTimeout?: number;
}

export interface PeerRec {
  readonly conn: ConnState;
  /** The key of the session this socket holds, once identified (and not taken over). */
  readonly session: string | null;
}

export interface SessionRec {
  readonly key: string;
  readonly bot: BotState;
  /** The socket holding the session; null while it waits for a resume. */
  readonly attached: string | null;
  readonly detachedAt: number | null;
}

export interface DiscodoWorld {
  readonly peers: Map<string, PeerRec>;
  readonly sessions: Map<string, SessionRec>;
  /** Other instances and this one's claims for sessions held there (cluster mode). */
  readonly cluster: ClusterState;
}

export type TimerKey =
  /** The socket's silence deadline (handshakeTimeout). */
  | { readonly kind: 'silence'; readonly conn: string }
  /** A detached session's resume window (vcTimeout). */
  | { readonly kind: 'expire'; readonly session: string }
  /** A claim for a session held on another instance (cluster mode): how long it waits for answers. */
  | { readonly kind: 'claim'; readonly claim: string };

export const timerId = (key: TimerKey): string => (key.kind === 'silence' ? `s:${key.conn}` : key.kind === 'expire' ? `e:${key.session}` : `c:${key.claim}`);

export type WorldEvent =
  | { readonly type: 'open'; readonly now: number; readonly conn: string; readonly forbidden?: string | undefined }
  | { readonly type: 'frame'; readonly now: number; readonly conn: string; readonly data: Buffer; readonly binary: boolean }
  | { readonly type: 'closed'; readonly now: number; readonly conn: string }
  | TimerEvent<TimerKey>
  /** Another instance came up or went away (cluster mode). */
  | { readonly type: 'peer'; readonly now: number; readonly instance: string; readonly up: boolean }
  /** A message from another instance's discodo dialect (cluster mode). */
  | { readonly type: 'remote'; readonly now: number; readonly from: string; readonly msg: ClusterMsg }
  /** The server stops: every session's voice clients are released. */
  | { readonly type: 'shutdown'; readonly now: number };

/** The dialect's own effects (beside the core ones). */
export type DiscodoEffect =
  /** The socket identified as session `key` (the admin API shows it). */
  | { readonly type: 'identified'; readonly conn: string; readonly key: string }
  | { readonly type: 'resumed'; readonly kind: 'detached' | 'takeover' }
  | { readonly type: 'expired'; readonly session: string }
  /** The voice backend: a voice client was created, changed or destroyed. */
  | { readonly type: 'voice'; readonly call: 'connect'; readonly session: string; readonly vc: VoiceClientState; readonly moved?: boolean }
  | { readonly type: 'voice'; readonly call: 'update'; readonly session: string; readonly vc: VoiceClientState }
  | { readonly type: 'voice'; readonly call: 'disconnect'; readonly session: string; readonly vc: VoiceClientState; readonly reason: DestroyReason }
  /** STATUS for the socket (load and counts are the dialect's to read). */
  | { readonly type: 'status'; readonly conn: string }
  /** A message to another instance (`to`), or to every one (null). */
  | { readonly type: 'cluster'; readonly to: string | null; readonly msg: ClusterMsg }
  /** A session moved to another instance (`out`) or from one (`in`). */
  | { readonly type: 'handoff'; readonly direction: 'in' | 'out' };

/** What a socket's machine asks of its session. */
export type SessionOp = Extract<ConnEffect, { type: 'discord-event' | 'vc-destroy' | 'query' | 'status' }>;

export type WorldEffect = CoreEffect<TimerKey> | DiscodoEffect;

export function initialWorld(): DiscodoWorld {
  return { peers: new Map(), sessions: new Map(), cluster: initialCluster() };
}

export function step(w: DiscodoWorld, ev: WorldEvent, cfg: WorldConfig): Stepped<DiscodoWorld, WorldEffect> {
  const fx: WorldEffect[] = [];
  switch (ev.type) {
    case 'open': {
      w.peers.set(ev.conn, { conn: initialState(ev.now), session: null });
      onConn(w, ev.conn, { type: 'open', now: ev.now, forbidden: ev.forbidden }, cfg, fx);
      break;
    }
    case 'frame':
      onConn(w, ev.conn, { type: 'frame', now: ev.now, data: ev.data, binary: ev.binary }, cfg, fx);
      break;
    case 'closed':
      closed(w, ev.conn, ev.now, cfg, fx);
      break;
    case 'timer':
      if (ev.key.kind === 'silence') onConn(w, ev.key.conn, { type: 'deadline', now: ev.now }, cfg, fx);
      else if (ev.key.kind === 'expire') expire(w, ev.key.session, fx);
      else claimTimedOut(w, ev.key.claim, ev.now, cfg, fx);
      break;
    case 'peer':
      onPeer(w, ev.instance, ev.up, ev.now, cfg, fx);
      break;
    case 'remote':
      onRemote(w, ev.from, ev.msg, ev.now, cfg, fx);
      break;
    case 'shutdown':
      shutdownClaims(w, fx);
      for (const s of w.sessions.values()) {
        applyVoice(w, s, releaseAll(s.bot, 'shutdown'), fx);
        if (s.attached === null) fx.push({ type: 'timer', key: { kind: 'expire', session: s.key }, at: null });
      }
      w.sessions.clear();
      for (const [id, p] of w.peers) w.peers.set(id, { ...p, session: null });
      break;
  }
  return { state: w, effects: fx };
}

/** Feeds a socket's protocol machine and turns what it asks for into effects. */
function onConn(w: DiscodoWorld, conn: string, ev: Parameters<typeof connStep>[1], cfg: WorldConfig, fx: WorldEffect[]): void {
  const peer = w.peers.get(conn);
  if (!peer) return;
  const r = connStep(peer.conn, ev, cfg);
  w.peers.set(conn, { ...peer, conn: r.state });
  for (const e of r.effects) {
    switch (e.type) {
      case 'send':
        fx.push({ type: 'send', conn, frame: e.frame });
        break;
      case 'close':
        fx.push({ type: 'timer', key: { kind: 'silence', conn }, at: null });
        fx.push({ type: 'close', conn, code: e.code, reason: e.reason });
        break;
      case 'arm':
        fx.push({ type: 'timer', key: { kind: 'silence', conn }, at: ev.now + e.ms });
        break;
      case 'identify':
        identify(w, conn, e.data, ev.now, cfg, fx);
        break;
      case 'discord-event':
      case 'vc-destroy':
      case 'query':
      case 'status':
        sessionEffect(w, conn, e, ev.now, cfg, fx);
        break;
      default: {
        const never: never = e;
        throw new Error(`unhandled discodo machine effect ${JSON.stringify(never)}`);
      }
    }
  }
}

/**
 * What an identified socket asks (of its session, or STATUS); kept for later, in order,
 * while its session is being fetched from another instance.
 */
export function sessionEffect(w: DiscodoWorld, conn: string, e: SessionOp, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  if (w.cluster.claimByConn.has(conn)) return queueOp(w, conn, e, now, fx);
  if (e.type === 'status') {
    fx.push({ type: 'status', conn });
    return;
  }
  const s = sessionOf(w, conn);
  if (!s) return;
  switch (e.type) {
    case 'discord-event':
      return applyVoice(w, s, onDiscordEvent(s.bot, e.event.t, e.event.d, { now, newId: cfg.newId }), fx);
    case 'vc-destroy':
      return applyVoice(w, s, destroyVoiceClient(s.bot, e.op, e.guildId), fx);
    case 'query':
      fx.push({ type: 'send', conn, frame: playerQuery(s.bot, e.op, e.guildId) });
      return;
  }
}

function sessionOf(w: DiscodoWorld, conn: string): SessionRec | undefined {
  const key = w.peers.get(conn)?.session;
  return key === null || key === undefined ? undefined : w.sessions.get(key);
}

function identify(w: DiscodoWorld, conn: string, data: IdentifyData, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  const key = sessionKey(data.userId, data.shardId);
  const peer = w.peers.get(conn);
  if (!peer) return;
  fx.push({ type: 'identified', conn, key });
  const existing = w.sessions.get(key);
  // Not held here: another instance may hold it (cluster mode).
  if (!existing && identifyRemote(w, conn, key, data, now, cfg, fx)) return;
  w.peers.set(conn, { ...peer, session: key });
  if (!existing) {
    w.sessions.set(key, { key, bot: newBotState(data.userId, data.shardId), attached: conn, detachedAt: null });
    fx.push({ type: 'send', conn, frame: encode.identified() });
    return;
  }
  const old = existing.attached;
  if (old !== null && old !== conn) {
    // A newer socket takes a live session over; the older one is closed with 4005.
    takeOver(w, old, fx);
  }
  fx.push({ type: 'resumed', kind: old !== null ? 'takeover' : 'detached' });
  if (old === null) fx.push({ type: 'timer', key: { kind: 'expire', session: key }, at: null });
  w.sessions.set(key, { ...existing, attached: conn, detachedAt: null });
  fx.push({ type: 'send', conn, frame: encode.identified() });
  fx.push({ type: 'send', conn, frame: encode.resumed(resumedList(existing.bot), cfg.compat) });
}

function closed(w: DiscodoWorld, conn: string, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  const peer = w.peers.get(conn);
  if (!peer) return;
  w.peers.delete(conn);
  fx.push({ type: 'timer', key: { kind: 'silence', conn }, at: null });
  connClosed(w, conn);
  const s = peer.session === null ? undefined : w.sessions.get(peer.session);
  // Keep the voice clients for vcTimeout, unless a newer socket already holds the session.
  if (!s || s.attached !== conn) return;
  w.sessions.set(s.key, { ...s, attached: null, detachedAt: now });
  fx.push({ type: 'timer', key: { kind: 'expire', session: s.key }, at: now + cfg.vcTimeout });
}

function expire(w: DiscodoWorld, key: string, fx: WorldEffect[]): void {
  const s = w.sessions.get(key);
  if (!s || s.attached !== null) return;
  w.sessions.delete(key);
  fx.push({ type: 'expired', session: key });
  fx.push({ type: 'log', level: 'debug', msg: 'discodo: session expired', data: { session: key, voiceClients: s.bot.voiceClients.size } });
  applyVoice(w, s, releaseAll(s.bot, 'expired'), fx);
}

/** A voice step on a session: its new state, frames to its socket, calls to the backend. */
export function applyVoice(w: DiscodoWorld, s: SessionRec, vs: VoiceStep, fx: WorldEffect[]): void {
  if (w.sessions.get(s.key) === s) w.sessions.set(s.key, { ...s, bot: vs.state });
  for (const e of vs.effects) {
    switch (e.type) {
      case 'send':
        if (s.attached !== null) fx.push({ type: 'send', conn: s.attached, frame: e.frame });
        break;
      case 'connect':
        fx.push({ type: 'voice', call: 'connect', session: s.key, vc: e.vc });
        break;
      case 'update':
        fx.push({ type: 'voice', call: 'update', session: s.key, vc: e.vc });
        break;
      case 'disconnect':
        fx.push({ type: 'voice', call: 'disconnect', session: s.key, vc: e.vc, reason: e.reason });
        break;
      default: {
        const never: never = e;
        throw new Error(`unhandled voice effect ${JSON.stringify(never)}`);
      }
    }
  }
}

/** Counts for leak checks, `muster status` and STATUS. */
export function worldSummary(w: DiscodoWorld): { connections: number; sessions: number; liveSessions: number; detachedSessions: number; voiceClients: number; pendingVoice: number } {
  let live = 0;
  let vcs = 0;
  let pending = 0;
  for (const s of w.sessions.values()) {
    if (s.attached !== null) live++;
    vcs += s.bot.voiceClients.size;
    pending += s.bot.pending.size;
  }
  return { connections: w.peers.size, sessions: w.sessions.size, liveSessions: live, detachedSessions: w.sessions.size - live, voiceClients: vcs, pendingVoice: pending };
}
