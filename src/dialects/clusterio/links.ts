/**
 * One socket's life: the link state machine (machine.ts) fed with frames and deadlines,
 * its effects carried out, link-level frames and closes, and what a close leaves behind.
 */
import { encodeFrame } from '../../protocols/clusterio/codec.js';
import { ClusterioClose, CloseReason, SESSION_CONTROL_TYPES } from '../../protocols/clusterio/messages.js';
import { step, type LinkEffect, type LinkEvent } from './machine.js';
import { ENDING_CODES, MAX_FRAMES_BEFORE_LOAD, type Hub, type Link } from './types.js';
import { register } from './handshake.js';
import { deliver } from './instances.js';
import { resume, retire } from './sessions.js';

export function feed(hub: Hub, link: Link, event: LinkEvent): void {
  const { state, effects } = step(link.state, event, { heartbeatInterval: hub.cfg.heartbeatInterval, preAuthMaxBytes: hub.cfg.preAuthMaxBytes });
  link.conn.stateChanged(link.state.phase, state.phase);
  link.state = state;
  if (state.phase === 'ready') link.conn.markAuthenticated();
  const peer = link.peer;
  if (peer && peer.link === link && state.mode === 'session') peer.lastReceived = state.lastReceived;
  for (const e of effects) run(hub, link, e);
}

export function run(hub: Hub, link: Link, e: LinkEffect): void {
  switch (e.type) {
    case 'send':
      sendLink(link, e.frameType, e.data);
      return;
    case 'close':
      closeLink(link, e.code, e.reason);
      return;
    case 'hangup': {
      link.endSession = true;
      const peer = link.peer;
      if (peer && peer.link === link) retire(hub, peer, `closed the link (${e.reason})`);
      link.conn.close(ClusterioClose.NORMAL, 'closed by the client');
      return;
    }
    case 'ping':
      link.conn.ping();
      return;
    case 'register':
      register(hub, link, e.msg, e.session).catch((err: unknown) => {
        hub.ctx.logger.error({ err, conn: link.conn.id }, 'clusterio: registration failed');
        run(hub, link, { type: 'close', code: ClusterioClose.INTERNAL_ERROR, reason: CloseReason.INTERNAL });
      });
      return;
    case 'resume':
      resume(hub, link, e.token, e.lastSeq);
      return;
    case 'defer':
      link.deferred.push(e.text);
      return;
    case 'ack':
      link.peer?.session?.ack(e.lastSeq);
      return;
    case 'replay': {
      const s = link.peer?.session;
      if (s) for (const f of s.since(e.after)) link.conn.send(f.frame);
      return;
    }
    case 'deliver': {
      const peer = link.peer;
      if (peer?.alive) deliver(hub, link, peer, e.env, e.kind, e.plugin);
      return;
    }
  }
}

/** Sends a link-level frame: session-control frames are seq 0 in a session; the rest use the seed numbering. */
export function sendLink(link: Link, type: string, data: string): void {
  const seq = link.state.mode === 'session' && SESSION_CONTROL_TYPES.has(type) ? 0 : link.seedSeq++;
  link.conn.send(encodeFrame(seq, type, data));
}

export function closeLink(link: Link, code: number, reason: string): void {
  link.state = { ...link.state, phase: 'closed' };
  if (link.conn.closing) return;
  if (ENDING_CODES.has(code)) link.endSession = true;
  const seq = link.state.mode === 'session' ? 0 : link.seedSeq++;
  link.conn.sendFinal(encodeFrame(seq, 'close', JSON.stringify({ reason })));
  link.conn.close(code, reason);
}

export function armHandshake(hub: Hub, link: Link): void {
  link.handshakeTimer?.cancel();
  link.handshakeTimer = hub.ctx.scheduler.after(hub.cfg.handshakeTimeout, () => feed(hub, link, { type: 'handshake-deadline' }));
}

export function startHeartbeat(hub: Hub, link: Link): void {
  link.handshakeTimer?.cancel();
  link.handshakeTimer = undefined;
  link.heartbeat?.cancel();
  link.heartbeat = hub.ctx.scheduler.every(hub.cfg.heartbeatInterval, () =>
    feed(hub, link, { type: 'tick', now: hub.ctx.scheduler.now(), lastSeen: link.conn.lastSeen }),
  );
}

export function flushDeferred(hub: Hub, link: Link): void {
  while (link.deferred.length > 0 && link.state.phase !== 'closed' && link.state.phase !== 'authorizing') {
    feedFrame(hub, link, link.deferred.shift());
  }
}

/** Feeds a frame; a bug while handling it still closes with a `close {reason}` first (1011). */
export function feedFrame(hub: Hub, link: Link, text: string | undefined): void {
  try {
    feed(hub, link, { type: 'frame', text, now: hub.ctx.scheduler.now() });
  } catch (err) {
    hub.ctx.logger.error({ err, conn: link.conn.id }, 'clusterio: failed on a frame');
    run(hub, link, { type: 'close', code: ClusterioClose.INTERNAL_ERROR, reason: CloseReason.INTERNAL });
  }
}

export function onLoaded(hub: Hub): void {
  hub.loaded = true;
  for (const link of hub.links.values()) flushDeferred(hub, link);
}

export function onLinkClose(hub: Hub, link: Link, _code: number): void {
  link.handshakeTimer?.cancel();
  link.heartbeat?.cancel();
  link.handshakeTimer = undefined;
  link.heartbeat = undefined;
  link.state = { ...link.state, phase: 'closed' };
  link.deferred = [];
  hub.links.delete(link.conn);
  const peer = link.peer;
  link.peer = undefined;
  if (!peer || peer.link !== link) return;
  peer.link = undefined;
  if (peer.alive && peer.session && !link.endSession) {
    // The session waits sessionTimeout for a resume; requests to it are buffered.
    hub.sessions.detach(peer.session);
    return;
  }
  retire(hub, peer, 'disconnected');
}

/**
 * Until the registry is loaded (start-up only) a socket's frames wait. A client sends one
 * register or resume frame and waits for its answer, so the wait is bounded: more than
 * MAX_FRAMES_BEFORE_LOAD frames, or more than 4 × preAuthMaxBytes, is a bad handshake
 * (`close {reason: "Invalid handshake"}`, 1008) and what waited is dropped.
 */
export function deferUntilLoaded(hub: Hub, link: Link, text: string | undefined, bytes: number): void {
  if (link.state.phase === 'closed') return;
  link.deferredBytes += bytes;
  if (link.deferred.length >= MAX_FRAMES_BEFORE_LOAD || link.deferredBytes > 4 * hub.cfg.preAuthMaxBytes) {
    link.deferred = [];
    hub.ctx.logger.debug({ conn: link.conn.id, frames: MAX_FRAMES_BEFORE_LOAD, bytes: link.deferredBytes }, 'clusterio: too much sent before the registry loaded');
    run(hub, link, { type: 'close', code: ClusterioClose.POLICY_VIOLATION, reason: CloseReason.INVALID_HANDSHAKE });
    return;
  }
  link.deferred.push(text);
}
