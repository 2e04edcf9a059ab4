/**
 * Registration: token check, the peer's record, and a slave id registered again.
 */
import { ClusterioClose, CloseReason } from '../../protocols/clusterio/messages.js';
import type { RegisterMessage } from './machine.js';
import type { Hub, Link, Peer } from './types.js';
import { closeLink, feed, flushDeferred, startHeartbeat } from './links.js';
import { retire } from './sessions.js';

export async function register(hub: Hub, link: Link, msg: RegisterMessage, session: boolean): Promise<void> {
  const expect = msg.role === 'slave' ? ({ aud: 'slave', id: msg.id } as const) : ({ aud: 'control' } as const);
  const ok = msg.role === 'control' || msg.id !== '' ? await hub.tokens.verify(msg.token, expect, hub.ctx.scheduler.now()) : false;
  if (link.conn.closing || link.state.phase !== 'authorizing') return;
  if (!ok) {
    link.conn.authFailed(`${msg.role} token refused`);
    feed(hub, link, { type: 'refused' });
    return;
  }
  if (msg.role === 'slave') {
    // `ready` acknowledges the registration: the slave is on record before it goes out.
    await hub.registry.putSlave({ id: msg.id, name: msg.name, agent: msg.agent, version: msg.version });
    if (link.conn.closing || link.state.phase !== 'authorizing') return;
    const old = hub.slaves.get(msg.id);
    if (old) replace(hub, old);
  }
  const peer: Peer = {
    key: `${msg.role}:${link.conn.id}`,
    role: msg.role,
    slaveId: msg.id,
    name: msg.name,
    agent: msg.agent,
    version: msg.version,
    mode: session ? 'session' : 'seed',
    link,
    session: undefined,
    lastReceived: 0,
    subscriptions: new Set(),
    expired: new Set(),
    alive: true,
    registeredAt: hub.ctx.scheduler.now(),
  };
  link.peer = peer;
  if (session) peer.session = hub.sessions.create(peer.key, peer, link);
  if (msg.role === 'slave') {
    hub.slaves.set(msg.id, peer);
    link.conn.identity = `slave ${msg.id} (${msg.name})`;
  } else {
    hub.controls.add(peer);
    link.conn.identity = `control (${msg.agent})`;
  }
  const ready = peer.session
    ? JSON.stringify({ session_token: peer.session.id, heartbeat_interval: hub.cfg.heartbeatInterval / 1000 })
    : '{}';
  startHeartbeat(hub, link);
  feed(hub, link, { type: 'authorized', role: msg.role, ready, now: hub.ctx.scheduler.now() });
  flushDeferred(hub, link);
}

/** A slave id registered again: its older connection goes, and so does its session. */
export function replace(hub: Hub, old: Peer): void {
  const oldLink = old.link;
  if (oldLink) {
    oldLink.peer = undefined;
    old.link = undefined;
    oldLink.conn.markWhy('superseded');
    closeLink(oldLink, ClusterioClose.POLICY_VIOLATION, CloseReason.REPLACED);
  }
  retire(hub, old, 'registered from another connection');
}
