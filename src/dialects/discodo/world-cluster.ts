/**
 * Discodo sessions across instances (cluster mode), as part of the pure world.
 *
 * A session lives on one instance: the one whose socket identified it last. When a socket
 * identifies on an instance that does not hold its session and other instances are up,
 * the instance **claims** the session: it tells every instance (`claim`, with a random
 * claim id of its own and the time), and each one answers it: `handoff` with the session
 * if it held it (a live socket there is closed with 4005 first, as in a takeover on one
 * instance; a detached session's resume window ends there), or `none`. Once every instance
 * it knew to be up has answered (or gone down, or `claimTimeout` passed), the claim
 * settles: the socket gets IDENTIFIED, then RESUMED if any instance handed the session
 * over, and the frames it sent meanwhile are played in order.
 *
 * Two claims for one key at once (the bot on two instances at the same time): the later
 * one (by `at`, then claim id) wins on every instance alike. An instance whose own claim
 * is overtaken answers the winner only once its own claim has settled, with everything it
 * gathered, and closes its socket with 4005, so the session is never split.
 *
 * Nothing is shared but these messages: no registry to clean when an instance dies (its
 * sessions die with it, as they would on one instance), and claims are matched by the id
 * the claiming instance chose, never by the session key a bot sent. The world knows no
 * instance id of its own and no broker: messages come in as `remote` and `peer` events
 * and go out as `cluster` effects (the glue carries them).
 */
import { CloseCodes, encode, type IdentifyData, type Snowflake } from '../../protocols/discodo/messages.js';
import type { ClusterMsg } from './cluster-wire.js';
import { mergeBots, newBotState, releaseAll, resumedList, type BotState } from './voice.js';
import { applyVoice, sessionEffect, type DiscodoWorld, type SessionOp, type SessionRec, type WorldConfig, type WorldEffect } from './world.js';

/** How long a claim waits for an instance that does not answer (ms), unless configured. */
export const DEFAULT_CLAIM_TIMEOUT = 2000;

/** Frames a socket may send while its claim is out; past it they are dropped. */
export const MAX_QUEUED = 1000;

export interface Claim {
  readonly id: string;
  readonly key: string;
  readonly userId: Snowflake;
  readonly shardId: Snowflake | null;
  readonly at: number;
  /** The socket waiting for the session (null once it has closed). */
  conn: string | null;
  /** Instances that have not answered yet. */
  readonly waiting: Set<string>;
  /** The session as handed over so far. */
  bot: BotState | undefined;
  /** Whether a socket held it where it came from (a takeover, not a resume of a detached session). */
  attachedThere: boolean;
  /** A later claim for the key, from another instance: what this one gathers goes there. */
  successor: { readonly from: string; readonly id: string } | undefined;
  /** The socket's frames that need the session, in order. */
  queued: Array<{ readonly now: number; readonly op: SessionOp }>;
}

export interface ClusterState {
  /** Other instances up, as the broker reports them. */
  readonly live: Set<string>;
  /** This instance's claims, by claim id. */
  readonly claims: Map<string, Claim>;
  /** Session key -> this instance's claim for it. */
  readonly claimOf: Map<string, string>;
  /** Socket -> the claim it waits on. */
  readonly claimByConn: Map<string, string>;
}

export function initialCluster(): ClusterState {
  return { live: new Set(), claims: new Map(), claimOf: new Map(), claimByConn: new Map() };
}

/** The older socket of a session is closed with 4005 (a newer one, here or elsewhere, took it). */
export function takeOver(w: DiscodoWorld, old: string, fx: WorldEffect[]): void {
  const o = w.peers.get(old);
  if (o) w.peers.set(old, { conn: { ...o.conn, phase: 'closed' }, session: null });
  fx.push({ type: 'timer', key: { kind: 'silence', conn: old }, at: null });
  fx.push({ type: 'close', conn: old, code: CloseCodes.TAKEN_OVER, reason: 'session taken over by a newer connection' });
}

/**
 * IDENTIFY for a session this instance does not hold. Returns false when it is to be made
 * here and now (no claim out for it and no other instance up: one instance's behaviour).
 */
export function identifyRemote(w: DiscodoWorld, conn: string, key: string, data: IdentifyData, now: number, cfg: WorldConfig, fx: WorldEffect[]): boolean {
  const cl = w.cluster;
  const pending = claimFor(w, key);
  if (pending) {
    // A second socket here while the claim is out: it takes the claim over.
    if (pending.conn !== null && pending.conn !== conn) {
      cl.claimByConn.delete(pending.conn);
      takeOver(w, pending.conn, fx);
    }
    pending.conn = conn;
    pending.queued = [];
    cl.claimByConn.set(conn, pending.id);
    return true;
  }
  if (cl.live.size === 0) return false;
  const c: Claim = {
    id: cfg.newId(),
    key,
    userId: data.userId,
    shardId: data.shardId,
    at: now,
    conn,
    waiting: new Set(cl.live),
    bot: undefined,
    attachedThere: false,
    successor: undefined,
    queued: [],
  };
  cl.claims.set(c.id, c);
  cl.claimOf.set(key, c.id);
  cl.claimByConn.set(conn, c.id);
  fx.push({ type: 'cluster', to: null, msg: { t: 'claim', id: c.id, key, at: now } });
  fx.push({ type: 'timer', key: { kind: 'claim', claim: c.id }, at: now + (cfg.claimTimeout ?? DEFAULT_CLAIM_TIMEOUT) });
  return true;
}

function claimFor(w: DiscodoWorld, key: string): Claim | undefined {
  const id = w.cluster.claimOf.get(key);
  return id === undefined ? undefined : w.cluster.claims.get(id);
}

/** A frame that needs the session, from a socket whose claim is out: kept for when it settles. */
export function queueOp(w: DiscodoWorld, conn: string, op: SessionOp, now: number, fx: WorldEffect[]): void {
  const id = w.cluster.claimByConn.get(conn);
  const c = id === undefined ? undefined : w.cluster.claims.get(id);
  if (!c) return;
  if (c.queued.length >= MAX_QUEUED) {
    fx.push({ type: 'log', level: 'warn', msg: 'discodo: too many frames while the session is being fetched from another instance; dropped', data: { session: c.key }, peer: conn });
    return;
  }
  c.queued.push({ now, op });
}

/** The socket of a claim closed: the claim goes on (what arrives is kept as a detached session). */
export function connClosed(w: DiscodoWorld, conn: string): void {
  const id = w.cluster.claimByConn.get(conn);
  if (id === undefined) return;
  w.cluster.claimByConn.delete(conn);
  const c = w.cluster.claims.get(id);
  if (c) {
    c.conn = null;
    c.queued = [];
  }
}

export function onPeer(w: DiscodoWorld, instance: string, up: boolean, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  const cl = w.cluster;
  if (up) {
    cl.live.add(instance);
    return;
  }
  cl.live.delete(instance);
  for (const c of [...cl.claims.values()]) {
    // A winner that died takes nothing: this claim wins after all.
    if (c.successor?.from === instance) c.successor = undefined;
    c.waiting.delete(instance);
    if (c.waiting.size === 0) settle(w, c, now, cfg, fx);
  }
}

export function claimTimedOut(w: DiscodoWorld, id: string, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  const c = w.cluster.claims.get(id);
  if (!c) return;
  fx.push({ type: 'log', level: 'warn', msg: 'discodo: instances did not answer a session claim in time; going on without them', data: { session: c.key, instances: [...c.waiting] } });
  settle(w, c, now, cfg, fx);
}

/** Whether claim `a` is later than claim `b` (the same order on every instance). */
const later = (a: { at: number; id: string }, b: { at: number; id: string }): boolean => a.at > b.at || (a.at === b.at && a.id > b.id);

export function onRemote(w: DiscodoWorld, from: string, msg: ClusterMsg, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  const cl = w.cluster;
  switch (msg.t) {
    case 'claim': {
      const s = w.sessions.get(msg.key);
      if (s) return handOff(w, s, from, msg.id, fx);
      const mine = claimFor(w, msg.key);
      if (mine && mine.successor === undefined && later(msg, mine)) {
        // Overtaken: the answer waits until this claim has gathered what it can.
        mine.successor = { from, id: msg.id };
        return;
      }
      fx.push({ type: 'cluster', to: from, msg: { t: 'none', id: msg.id } });
      return;
    }
    case 'none':
    case 'handoff': {
      const c = cl.claims.get(msg.id);
      if (!c) {
        if (msg.t === 'handoff') late(w, msg.key, msg.bot, now, cfg, fx);
        return;
      }
      if (msg.t === 'handoff') {
        if (msg.key !== c.key) return;
        c.bot = c.bot ? mergeBots(c.bot, msg.bot) : msg.bot;
        c.attachedThere ||= msg.attached;
      } else if (!c.waiting.has(from)) return;
      c.waiting.delete(from);
      if (c.waiting.size === 0) settle(w, c, now, cfg, fx);
      return;
    }
    default: {
      const never: never = msg;
      throw new Error(`unhandled discodo cluster message ${JSON.stringify(never)}`);
    }
  }
}

/** Gives session `s` to the instance that claimed it: its socket here is closed with 4005. */
function handOff(w: DiscodoWorld, s: SessionRec, to: string, id: string, fx: WorldEffect[]): void {
  if (s.attached !== null) takeOver(w, s.attached, fx);
  else fx.push({ type: 'timer', key: { kind: 'expire', session: s.key }, at: null });
  w.sessions.delete(s.key);
  applyVoice(w, s, releaseAll(s.bot, 'moved'), fx);
  fx.push({ type: 'cluster', to, msg: { t: 'handoff', id, key: s.key, attached: s.attached !== null, bot: s.bot } });
  fx.push({ type: 'handoff', direction: 'out' });
  fx.push({ type: 'log', level: 'debug', msg: 'discodo: session handed over to another instance', data: { session: s.key, to, voiceClients: s.bot.voiceClients.size } });
}

/** Every instance has answered claim `c` (or gone, or the time is up). */
function settle(w: DiscodoWorld, c: Claim, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  const cl = w.cluster;
  cl.claims.delete(c.id);
  if (cl.claimOf.get(c.key) === c.id) cl.claimOf.delete(c.key);
  if (c.conn !== null) cl.claimByConn.delete(c.conn);
  fx.push({ type: 'timer', key: { kind: 'claim', claim: c.id }, at: null });
  if (c.successor) {
    const { from, id } = c.successor;
    if (c.conn === null && c.bot === undefined) {
      fx.push({ type: 'cluster', to: from, msg: { t: 'none', id } });
      return;
    }
    const bot = c.bot ?? newBotState(c.userId, c.shardId);
    if (c.conn !== null) takeOver(w, c.conn, fx);
    fx.push({ type: 'cluster', to: from, msg: { t: 'handoff', id, key: c.key, attached: c.conn !== null || c.attachedThere, bot } });
    fx.push({ type: 'handoff', direction: 'out' });
    return;
  }
  const found = c.bot !== undefined;
  const conn = c.conn !== null && w.peers.has(c.conn) ? c.conn : null;
  if (!found && conn === null) return;
  const bot = c.bot ?? newBotState(c.userId, c.shardId);
  const s: SessionRec = { key: c.key, bot, attached: conn, detachedAt: conn === null ? now : null };
  w.sessions.set(c.key, s);
  if (found) fx.push({ type: 'handoff', direction: 'in' });
  for (const vc of bot.voiceClients.values()) fx.push({ type: 'voice', call: 'connect', session: c.key, vc, moved: true });
  if (conn === null) {
    fx.push({ type: 'timer', key: { kind: 'expire', session: c.key }, at: now + cfg.vcTimeout });
    return;
  }
  const peer = w.peers.get(conn);
  if (peer) w.peers.set(conn, { ...peer, session: c.key });
  fx.push({ type: 'send', conn, frame: encode.identified() });
  if (found) {
    fx.push({ type: 'resumed', kind: c.attachedThere ? 'takeover' : 'detached' });
    fx.push({ type: 'send', conn, frame: encode.resumed(resumedList(bot), cfg.compat) });
  }
  for (const q of c.queued) sessionEffect(w, conn, q.op, q.now, cfg, fx);
}

/**
 * A session handed over after its claim settled (an instance that answered late): kept,
 * merged into the session here or its claim, or as a detached session for `vcTimeout`.
 */
function late(w: DiscodoWorld, key: string, bot: BotState, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  fx.push({ type: 'log', level: 'info', msg: 'discodo: a session arrived from another instance after its claim had settled; kept', data: { session: key, voiceClients: bot.voiceClients.size } });
  fx.push({ type: 'handoff', direction: 'in' });
  const c = claimFor(w, key);
  if (c) {
    c.bot = c.bot ? mergeBots(c.bot, bot) : bot;
    return;
  }
  const s = w.sessions.get(key);
  const merged = s ? mergeBots(s.bot, bot) : bot;
  for (const [g, vc] of merged.voiceClients) {
    if (!s?.bot.voiceClients.has(g)) fx.push({ type: 'voice', call: 'connect', session: key, vc, moved: true });
  }
  if (s) {
    w.sessions.set(key, { ...s, bot: merged });
    return;
  }
  w.sessions.set(key, { key, bot: merged, attached: null, detachedAt: now });
  fx.push({ type: 'timer', key: { kind: 'expire', session: key }, at: now + cfg.vcTimeout });
}

/** The server stops: claims end (what they gathered was never connected here). */
export function shutdownClaims(w: DiscodoWorld, fx: WorldEffect[]): void {
  for (const c of w.cluster.claims.values()) fx.push({ type: 'timer', key: { kind: 'claim', claim: c.id }, at: null });
  w.cluster.claims.clear();
  w.cluster.claimOf.clear();
  w.cluster.claimByConn.clear();
}
