/**
 * One socket's life in the world: the link machine (../machine.ts) fed with frames and
 * deadlines and its effects carried out, link-level frames and closes, the handshake and
 * heartbeat timers, frames that wait (for the registry to load, or for a token check),
 * and what a closed socket leaves behind.
 */
import { encodeFrame } from '../../../protocols/clusterio/codec.js';
import { ClusterioClose, CloseReason, PROTOCOL_VERSION, SESSION_CONTROL_TYPES } from '../../../protocols/clusterio/messages.js';
import { initialState, step as machineStep, type LinkEffect, type LinkEvent } from '../machine.js';
import { ENDING_CODES, MAX_FRAMES_BEFORE_LOAD } from '../types.js';
import { deliverMessage } from './messages.js';
import { detachSession, resume, retire } from './peers.js';
import type { LinkRec, Tx } from './state.js';

/** A frame for `conn`: a `send` to the socket being served, a Broker `deliver` to any other. */
export function frameTo(tx: Tx, conn: string, frame: string): void {
  if (conn === tx.here) tx.out.push({ type: 'send', conn, frame });
  else tx.out.push({ type: 'deliver', target: { to: 'conn', conn }, frame });
}

export function openLink(tx: Tx, conn: string): void {
  const link: LinkRec = {
    conn,
    state: initialState,
    seedSeq: 1,
    peer: undefined,
    deferred: [],
    deferredBytes: 0,
    endSession: false,
    closing: false,
    attempt: 0,
    registering: undefined,
  };
  tx.w.links.set(conn, link);
  sendLink(tx, link, 'hello', JSON.stringify({ version: PROTOCOL_VERSION }));
  armHandshake(tx, link);
}

/** A frame from the socket: it waits while the registry loads or a token is checked. */
export function onFrame(tx: Tx, link: LinkRec, text: string | undefined, bytes: number): void {
  if (!tx.w.loaded) return deferUntilLoaded(tx, link, text, bytes);
  if (link.deferred.length > 0) {
    link.deferred.push(text);
    return;
  }
  feedFrame(tx, link, text);
}

export function feedLink(tx: Tx, link: LinkRec, event: LinkEvent): void {
  const before = link.state;
  const { state, effects } = machineStep(before, event, tx.cfg.machine);
  link.state = state;
  if (before.phase !== state.phase) {
    tx.out.push({ type: 'phase', conn: link.conn, from: before.phase, to: state.phase });
    if (state.phase === 'ready') tx.out.push({ type: 'authenticated', conn: link.conn });
  }
  const peer = link.peer;
  if (peer && peer.link === link && state.mode === 'session') peer.lastReceived = state.lastReceived;
  for (const e of effects) run(tx, link, e);
}

function run(tx: Tx, link: LinkRec, e: LinkEffect): void {
  switch (e.type) {
    case 'send':
      return sendLink(tx, link, e.frameType, e.data);
    case 'close':
      return closeLink(tx, link, e.code, e.reason);
    case 'hangup': {
      link.endSession = true;
      const peer = link.peer;
      if (peer && peer.link === link) retire(tx, peer, `closed the link (${e.reason})`);
      if (link.closing) return;
      link.closing = true;
      tx.out.push({ type: 'close', conn: link.conn, code: ClusterioClose.NORMAL, reason: 'closed by the client' });
      return;
    }
    case 'ping':
      tx.out.push({ type: 'ping', conn: link.conn });
      return;
    case 'register': {
      link.attempt++;
      link.registering = { msg: e.msg, session: e.session };
      const { role, token, id } = e.msg;
      // A slave without an id has no token that could match it.
      if (role === 'slave' && id === '') return refuse(tx, link);
      tx.out.push({ type: 'verify', conn: link.conn, attempt: link.attempt, role, token, id });
      return;
    }
    case 'resume':
      return resume(tx, link, e.token, e.lastSeq);
    case 'defer':
      link.deferred.push(e.text);
      return;
    case 'ack': {
      const s = link.peer?.session;
      if (s) ackSession(s, e.lastSeq);
      return;
    }
    case 'replay': {
      const s = link.peer?.session;
      if (s) for (const f of s.buffer) if (f.seq > e.after) frameTo(tx, link.conn, f.frame);
      return;
    }
    case 'deliver': {
      const peer = link.peer;
      if (peer?.alive) deliverMessage(tx, link, peer, e.env, e.kind, e.plugin);
      return;
    }
  }
}

/** The token was refused: a failed authentication, and the link closes (4003). */
export function refuse(tx: Tx, link: LinkRec): void {
  const role = link.registering?.msg.role ?? 'slave';
  link.registering = undefined;
  tx.out.push({ type: 'refused', conn: link.conn, detail: `${role} token refused` });
  feedLink(tx, link, { type: 'refused' });
}

/** Drops every frame the peer acknowledged (up to `seq`). */
export function ackSession(s: { seq: number; acked: number; bytes: number; buffer: Array<{ seq: number; frame: string }> }, seq: number): void {
  if (seq <= s.acked) return;
  s.acked = Math.min(seq, s.seq);
  let drop = 0;
  while (drop < s.buffer.length && (s.buffer[drop] as { seq: number }).seq <= s.acked) {
    s.bytes -= Buffer.byteLength((s.buffer[drop] as { frame: string }).frame);
    drop++;
  }
  s.buffer.splice(0, drop);
}

/** A link-level frame: session-control frames are seq 0 in a session; the rest use the seed numbering. */
export function sendLink(tx: Tx, link: LinkRec, type: string, data: string): void {
  const seq = link.state.mode === 'session' && SESSION_CONTROL_TYPES.has(type) ? 0 : link.seedSeq++;
  frameTo(tx, link.conn, encodeFrame(seq, type, data));
}

/** `close {reason}` and the close: at most once per socket. */
export function closeLink(tx: Tx, link: LinkRec, code: number, reason: string): void {
  link.state = { ...link.state, phase: 'closed' };
  if (link.closing) return;
  link.closing = true;
  if (ENDING_CODES.has(code)) link.endSession = true;
  const seq = link.state.mode === 'session' ? 0 : link.seedSeq++;
  tx.out.push({ type: 'shut', conn: link.conn, frame: encodeFrame(seq, 'close', JSON.stringify({ reason })), code, reason });
}

export function armHandshake(tx: Tx, link: LinkRec): void {
  tx.out.push({ type: 'timer', key: { kind: 'handshake', conn: link.conn }, at: tx.now + tx.cfg.handshakeTimeout });
}

export function startHeartbeat(tx: Tx, link: LinkRec): void {
  tx.out.push({ type: 'timer', key: { kind: 'handshake', conn: link.conn }, at: null });
  tx.out.push({ type: 'timer', key: { kind: 'beat', conn: link.conn }, at: tx.now + tx.cfg.heartbeatInterval });
}

/** A ready link's beat: the machine pings (and sends a session its heartbeat) or closes on silence. */
export function onBeat(tx: Tx, link: LinkRec, lastSeen: number): void {
  if (link.state.phase === 'closed') return;
  tx.out.push({ type: 'timer', key: { kind: 'beat', conn: link.conn }, at: tx.now + tx.cfg.heartbeatInterval });
  feedLink(tx, link, { type: 'tick', now: tx.now, lastSeen });
}

export function flushDeferred(tx: Tx, link: LinkRec): void {
  while (link.deferred.length > 0 && link.state.phase !== 'closed' && link.state.phase !== 'authorizing') {
    feedFrame(tx, link, link.deferred.shift());
  }
}

/** Feeds a frame; a bug while handling it still closes with a `close {reason}` first (1011). */
export function feedFrame(tx: Tx, link: LinkRec, text: string | undefined): void {
  try {
    feedLink(tx, link, { type: 'frame', text, now: tx.now });
  } catch (err) {
    tx.out.push({ type: 'log', level: 'error', msg: 'clusterio: failed on a frame', data: { err, conn: link.conn } });
    closeLink(tx, link, ClusterioClose.INTERNAL_ERROR, CloseReason.INTERNAL);
  }
}

/**
 * Until the registry is loaded (start-up only) a socket's frames wait. A client sends one
 * register or resume frame and waits for its answer, so the wait is bounded: more than
 * MAX_FRAMES_BEFORE_LOAD frames, or more than 4 × preAuthMaxBytes, is a bad handshake
 * (`close {reason: "Invalid handshake"}`, 1008) and what waited is dropped.
 */
function deferUntilLoaded(tx: Tx, link: LinkRec, text: string | undefined, bytes: number): void {
  if (link.state.phase === 'closed') return;
  link.deferredBytes += bytes;
  if (link.deferred.length >= MAX_FRAMES_BEFORE_LOAD || link.deferredBytes > 4 * tx.cfg.preAuthMaxBytes) {
    link.deferred = [];
    tx.out.push({
      type: 'log',
      level: 'debug',
      msg: 'clusterio: too much sent before the registry loaded',
      data: { conn: link.conn, frames: MAX_FRAMES_BEFORE_LOAD, bytes: link.deferredBytes },
    });
    closeLink(tx, link, ClusterioClose.POLICY_VIOLATION, CloseReason.INVALID_HANDSHAKE);
    return;
  }
  link.deferred.push(text);
}

/** The socket has gone: its timers stop; its peer's session waits for a resume, or the peer is retired. */
export function onLinkClosed(tx: Tx, link: LinkRec): void {
  tx.out.push({ type: 'timer', key: { kind: 'handshake', conn: link.conn }, at: null });
  tx.out.push({ type: 'timer', key: { kind: 'beat', conn: link.conn }, at: null });
  link.state = { ...link.state, phase: 'closed' };
  link.deferred = [];
  link.registering = undefined;
  tx.w.links.delete(link.conn);
  const peer = link.peer;
  link.peer = undefined;
  if (!peer || peer.link !== link) return;
  peer.link = undefined;
  if (peer.alive && peer.session && !link.endSession) {
    // The session waits sessionTimeout for a resume; requests to it are buffered.
    detachSession(tx, peer);
    return;
  }
  retire(tx, peer, 'disconnected');
}
