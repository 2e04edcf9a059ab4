/**
 * The Clusterio world's step: every event the runtime feeds, dispatched to the module of
 * its concern. See state.ts for the state, events, effects and timer keys.
 */
import { assertNever, type Stepped } from '../../../core/runtime.js';
import { ClusterioClose, CloseReason } from '../../../protocols/clusterio/messages.js';
import { onPeer, onRegistryRead, onRemote } from './cluster.js';
import { failAll, onRequestTimeout, scrape } from './forwarding.js';
import { closeLink, feedLink, flushDeferred, onBeat, onFrame, onLinkClosed, openLink } from './links.js';
import { onAuthenticated, onSessionExpired, retire } from './peers.js';
import { onLoaded, onSettled } from './registry.js';
import type { ClusterioWorld, Eff, TimerKey, Tx, WorldConfig, WorldEvent } from './state.js';

export function step(w: ClusterioWorld, ev: WorldEvent, cfg: WorldConfig): Stepped<ClusterioWorld, Eff> {
  const here = 'conn' in ev ? ev.conn : undefined;
  const tx: Tx = { w, cfg, out: [], now: ev.now, here };
  switch (ev.type) {
    case 'open':
      openLink(tx, ev.conn);
      break;
    case 'frame': {
      const link = w.links.get(ev.conn);
      if (link) onFrame(tx, link, ev.text, ev.bytes);
      break;
    }
    case 'closed': {
      const link = w.links.get(ev.conn);
      if (link) onLinkClosed(tx, link);
      break;
    }
    case 'slow':
    case 'kick':
    case 'goodbye': {
      const link = w.links.get(ev.conn);
      const [code, reason] = CLOSES[ev.type];
      if (link) closeLink(tx, link, code, reason);
      break;
    }
    case 'authenticated': {
      const link = w.links.get(ev.conn);
      if (link && link.attempt === ev.attempt) onAuthenticated(tx, link, ev.ok);
      break;
    }
    case 'registryLoaded':
      onLoaded(tx, ev.slaves, ev.instances);
      w.loaded = true;
      for (const link of [...w.links.values()]) flushDeferred(tx, link);
      break;
    case 'settled':
      onSettled(tx, ev.id, ev.ok);
      break;
    case 'remote':
      onRemote(tx, ev.from, ev.msg);
      break;
    case 'peer':
      onPeer(tx, ev.instance, ev.up);
      break;
    case 'registryRead':
      onRegistryRead(tx, ev);
      break;
    case 'scrape':
      scrape(tx, ev.call);
      break;
    case 'shutdown':
      failAll(tx, 'the server is shutting down');
      for (const peer of [...w.sessions.values()]) retire(tx, peer, 'server shutting down');
      break;
    case 'timer':
      onTimer(tx, ev.key, ev.lastSeen);
      break;
    default:
      assertNever(ev, 'clusterio event');
  }
  return { state: w, effects: tx.out };
}

const CLOSES = {
  slow: [ClusterioClose.SLOW_CONSUMER, CloseReason.SLOW_CONSUMER],
  kick: [ClusterioClose.POLICY_VIOLATION, CloseReason.KICKED],
  goodbye: [ClusterioClose.GOING_AWAY, CloseReason.SHUTDOWN],
} as const;

function onTimer(tx: Tx, key: TimerKey, lastSeen: number): void {
  switch (key.kind) {
    case 'handshake': {
      const link = tx.w.links.get(key.conn);
      if (link) feedLink(tx, link, { type: 'handshake-deadline' });
      return;
    }
    case 'beat': {
      const link = tx.w.links.get(key.conn);
      if (link) onBeat(tx, link, lastSeen);
      return;
    }
    case 'session':
      return onSessionExpired(tx, key.token);
    case 'request':
      return onRequestTimeout(tx, key.key);
    default:
      assertNever(key, 'clusterio timer');
  }
}
