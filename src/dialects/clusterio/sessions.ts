/**
 * Sessions: resume after a reconnect (lossless or invalidated) and retiring a peer for good.
 */
import { ClusterioClose, CloseReason } from '../../protocols/clusterio/messages.js';
import type { Hub, Link, Peer } from './types.js';
import { armHandshake, closeLink, feed, flushDeferred, startHeartbeat } from './links.js';

export function resume(hub: Hub, link: Link, token: string, lastSeq: number): void {
  const s = hub.sessions.byId(token);
  const peer = s?.state;
  const resumable =
    s !== undefined &&
    peer !== undefined &&
    peer.alive &&
    lastSeq <= s.seq &&
    lastSeq >= s.acked &&
    s.since(lastSeq).length === s.seq - lastSeq;
  if (!resumable || !s || !peer) {
    if (peer?.alive) {
      // A resume that cannot be honoured losslessly ends the session.
      const other = peer.link;
      if (other && other !== link) {
        other.peer = undefined;
        peer.link = undefined;
        closeLink(other, ClusterioClose.POLICY_VIOLATION, 'Session invalidated');
      }
      retire(hub, peer, 'session invalidated');
    }
    hub.m.invalidations.inc();
    feed(hub, link, { type: 'invalidated' });
    armHandshake(hub, link);
    flushDeferred(hub, link);
    return;
  }
  const other = peer.link;
  if (other && other !== link) {
    other.peer = undefined;
    other.conn.markWhy('superseded');
    closeLink(other, ClusterioClose.POLICY_VIOLATION, CloseReason.RESUMED_ELSEWHERE);
  }
  hub.sessions.resume(s, link);
  peer.link = link;
  link.peer = peer;
  s.ack(lastSeq);
  hub.m.resumes.inc();
  link.conn.identity = peer.role === 'slave' ? `slave ${peer.slaveId} (${peer.name})` : `control (${peer.agent})`;
  startHeartbeat(hub, link);
  feed(hub, link, { type: 'resumed', role: peer.role, lastReceived: peer.lastReceived, replayAfter: lastSeq, now: hub.ctx.scheduler.now() });
  flushDeferred(hub, link);
}

/** A peer is gone for good: offline, session ended, its outstanding requests failed. */
export function retire(hub: Hub, peer: Peer, why: string): void {
  if (!peer.alive) return;
  peer.alive = false;
  if (peer.session) hub.sessions.end(peer.session);
  if (peer.role === 'slave' && hub.slaves.get(peer.slaveId) === peer) hub.slaves.delete(peer.slaveId);
  hub.controls.delete(peer);
  for (const e of hub.pending.takeWhere((x) => x.data.peer === peer)) {
    e.data.fail(`Slave ${peer.slaveId} went offline (${why}) before answering ${e.data.requestType}`);
  }
  hub.ctx.logger.debug({ peer: peer.key, why }, 'clusterio: peer retired');
}
