/**
 * Peers: registration once the token is checked (a slave on record before its `ready`),
 * a slave id registered again, the numbering of frames to a peer (seed: per socket;
 * session: per session, kept for replay until acknowledged), resume within the window
 * (lossless, or invalidated), and retiring a peer for good.
 */
import { encodeFrame } from '../../../protocols/clusterio/codec.js';
import { ClusterioClose, CloseReason, kindOf, SEED_CONTROL_ACCEPTS, SEED_SLAVE_ACCEPTS } from '../../../protocols/clusterio/messages.js';
import type { RegisterMessage } from '../machine.js';
import { registrationTime, slaveDown, slaveUp } from './cluster.js';
import { failPeer } from './forwarding.js';
import { ackSession, armHandshake, closeLink, feedLink, flushDeferred, frameTo, refuse, startHeartbeat } from './links.js';
import { putSlave } from './registry.js';
import type { LinkRec, PeerRec, SessionRec, Tx } from './state.js';

/** The token of the link's registration was checked (`ok`), or refused. */
export function onAuthenticated(tx: Tx, link: LinkRec, ok: boolean): void {
  const reg = link.registering;
  if (!reg || link.closing || link.state.phase !== 'authorizing') return;
  if (!ok) return refuse(tx, link);
  const { msg, session } = reg;
  if (msg.role === 'slave') {
    // `ready` acknowledges the registration: the slave is on record before it goes out.
    const wrote = putSlave(tx, { id: msg.id, name: msg.name, agent: msg.agent, version: msg.version }, { kind: 'register', conn: link.conn, attempt: link.attempt, msg, session });
    if (wrote) return;
  }
  admit(tx, link, msg, session);
}

/** The slave's record is durable (`ok`) or could not be written. */
export function onRegisterSaved(tx: Tx, conn: string, attempt: number, msg: RegisterMessage, session: boolean, ok: boolean): void {
  const link = tx.w.links.get(conn);
  if (!link || link.attempt !== attempt || link.closing || link.state.phase !== 'authorizing') return;
  if (!ok) {
    tx.out.push({ type: 'log', level: 'error', msg: 'clusterio: registration failed', data: { conn } });
    closeLink(tx, link, ClusterioClose.INTERNAL_ERROR, CloseReason.INTERNAL);
    return;
  }
  admit(tx, link, msg, session);
}

function admit(tx: Tx, link: LinkRec, msg: RegisterMessage, session: boolean): void {
  const { w } = tx;
  link.registering = undefined;
  if (msg.role === 'slave') {
    const old = w.slaves.get(msg.id);
    if (old) replace(tx, old);
  }
  const s: SessionRec | undefined = session ? { id: tx.cfg.newSessionId(), seq: 0, acked: 0, buffer: [], bytes: 0, detachedAt: null } : undefined;
  const peer: PeerRec = {
    key: `${msg.role}:${link.conn}`,
    role: msg.role,
    slaveId: msg.id,
    name: msg.name,
    agent: msg.agent,
    version: msg.version,
    mode: session ? 'session' : 'seed',
    link,
    session: s,
    lastReceived: 0,
    subscriptions: new Set(),
    expired: new Set(),
    alive: true,
    // Cluster mode: after any registration of the id known on another instance (cluster.ts).
    registeredAt: msg.role === 'slave' ? registrationTime(tx, msg.id) : tx.now,
  };
  link.peer = peer;
  if (s) w.sessions.set(s.id, peer);
  if (msg.role === 'slave') {
    w.slaves.set(msg.id, peer);
    slaveUp(tx, peer);
  } else w.controls.add(peer);
  tx.out.push({ type: 'identity', conn: link.conn, identity: identityOf(peer) });
  const ready = s ? JSON.stringify({ session_token: s.id, heartbeat_interval: tx.cfg.heartbeatInterval / 1000 }) : '{}';
  startHeartbeat(tx, link);
  feedLink(tx, link, { type: 'authorized', role: msg.role, ready, now: tx.now });
  flushDeferred(tx, link);
}

function identityOf(peer: PeerRec): string {
  return peer.role === 'slave' ? `slave ${peer.slaveId} (${peer.name})` : `control (${peer.agent})`;
}

/** A slave id registered again (here or, in cluster mode, on another instance): its older connection goes, and so does its session. */
export function replace(tx: Tx, old: PeerRec): void {
  const oldLink = old.link;
  if (oldLink) {
    oldLink.peer = undefined;
    old.link = undefined;
    tx.out.push({ type: 'why', conn: oldLink.conn, why: 'superseded' });
    closeLink(tx, oldLink, ClusterioClose.POLICY_VIOLATION, CloseReason.REPLACED);
  }
  retire(tx, old, 'registered from another connection');
}

export function resume(tx: Tx, link: LinkRec, token: string, lastSeq: number): void {
  const peer = tx.w.sessions.get(token);
  const s = peer?.session;
  const resumable =
    peer !== undefined &&
    s !== undefined &&
    peer.alive &&
    lastSeq <= s.seq &&
    lastSeq >= s.acked &&
    s.buffer.filter((f) => f.seq > lastSeq).length === s.seq - lastSeq;
  if (!resumable || !s || !peer) {
    if (peer?.alive) {
      // A resume that cannot be honoured losslessly ends the session.
      const other = peer.link;
      if (other && other !== link) {
        other.peer = undefined;
        peer.link = undefined;
        closeLink(tx, other, ClusterioClose.POLICY_VIOLATION, 'Session invalidated');
      }
      retire(tx, peer, 'session invalidated');
    }
    tx.out.push({ type: 'count', metric: 'invalidations' });
    feedLink(tx, link, { type: 'invalidated' });
    armHandshake(tx, link);
    flushDeferred(tx, link);
    return;
  }
  const other = peer.link;
  if (other && other !== link) {
    other.peer = undefined;
    tx.out.push({ type: 'why', conn: other.conn, why: 'superseded' });
    closeLink(tx, other, ClusterioClose.POLICY_VIOLATION, CloseReason.RESUMED_ELSEWHERE);
  }
  tx.out.push({ type: 'timer', key: { kind: 'session', token: s.id }, at: null });
  s.detachedAt = null;
  peer.link = link;
  link.peer = peer;
  ackSession(s, lastSeq);
  tx.out.push({ type: 'count', metric: 'resumes' });
  slaveUp(tx, peer);
  tx.out.push({ type: 'identity', conn: link.conn, identity: identityOf(peer) });
  startHeartbeat(tx, link);
  feedLink(tx, link, { type: 'resumed', role: peer.role, lastReceived: peer.lastReceived, replayAfter: lastSeq, now: tx.now });
  flushDeferred(tx, link);
}

/** The peer's socket went without ending its session: the resume window starts. */
export function detachSession(tx: Tx, peer: PeerRec): void {
  const s = peer.session;
  if (!s) return;
  s.detachedAt = tx.now;
  tx.out.push({ type: 'timer', key: { kind: 'session', token: s.id }, at: tx.now + tx.cfg.sessionTimeout });
  slaveUp(tx, peer);
}

/** The resume window of a session has passed. */
export function onSessionExpired(tx: Tx, token: string): void {
  const peer = tx.w.sessions.get(token);
  if (!peer || peer.link !== undefined) return;
  retire(tx, peer, 'session expired');
}

/** A peer is gone for good: offline, its session ended, its outstanding requests failed. */
export function retire(tx: Tx, peer: PeerRec, why: string): void {
  if (!peer.alive) return;
  const { w } = tx;
  peer.alive = false;
  if (peer.session && w.sessions.get(peer.session.id) === peer) {
    w.sessions.delete(peer.session.id);
    tx.out.push({ type: 'timer', key: { kind: 'session', token: peer.session.id }, at: null });
  }
  if (peer.role === 'slave' && w.slaves.get(peer.slaveId) === peer) {
    w.slaves.delete(peer.slaveId);
    slaveDown(tx, peer.slaveId);
  }
  w.controls.delete(peer);
  failPeer(tx, peer, why);
  tx.out.push({ type: 'log', level: 'debug', msg: 'clusterio: peer retired', data: { peer: peer.key, why } });
}

/** Sends a numbered frame to a peer. Returns its seq, or undefined when it was not sent. */
export function sendPeer(tx: Tx, peer: PeerRec, type: string, data: string): number | undefined {
  if (!peer.alive) return undefined;
  const s = peer.session;
  if (!s) {
    // Never send a seed (2020) client an unsolicited type it does not know: it would close the link.
    const accepts = peer.role === 'slave' ? SEED_SLAVE_ACCEPTS : SEED_CONTROL_ACCEPTS;
    if (kindOf(type) !== 'response' && !accepts.has(type)) {
      tx.out.push({ type: 'log', level: 'debug', msg: 'clusterio: not sent to a seed client that does not accept it', data: { peer: peer.key, type } });
      return undefined;
    }
    const link = peer.link;
    if (!link) return undefined;
    const seq = link.seedSeq++;
    if (!link.closing) frameTo(tx, link.conn, encodeFrame(seq, type, data));
    return seq;
  }
  const seq = ++s.seq;
  const frame = encodeFrame(seq, type, data);
  const len = Buffer.byteLength(frame);
  // Past the buffer's cap a frame is not kept: a resume after it cannot be lossless.
  if (s.bytes + len <= tx.cfg.sessionBufferBytes) {
    s.buffer.push({ seq, frame });
    s.bytes += len;
  }
  // Detached: kept in the session's buffer and replayed on resume.
  if (peer.link && !peer.link.closing) frameTo(tx, peer.link.conn, frame);
  return seq;
}
