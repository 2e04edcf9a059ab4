/**
 * Plugin events (broadcast to the other slaves, or dropped) and instance output to the
 * controls that subscribed to it.
 */
import { idOf, stringifyTree, type Envelope } from '../../protocols/clusterio/codec.js';
import { BROADCAST_PLUGIN_EVENTS } from '../../protocols/clusterio/messages.js';
import type { Hub, Peer } from './types.js';
import { sendPeer } from './forwarding.js';

export function instanceOutput(hub: Hub, _slave: Peer, env: Envelope): void {
  const id = idOf(env.tree.instance_id) as string;
  const data = stringifyTree(env.tree);
  for (const c of hub.controls) if (c.subscriptions.has(id)) sendPeer(hub, c, 'instance_output_event', data);
}

export function pluginEvent(hub: Hub, from: Peer, env: Envelope): void {
  const label = pluginLabel(hub, env.type);
  if (!BROADCAST_PLUGIN_EVENTS.has(env.type)) {
    hub.m.pluginEvents.inc({ type: label, action: 'dropped' });
    return;
  }
  hub.m.pluginEvents.inc({ type: label, action: 'broadcast' });
  const data = stringifyTree(env.tree);
  for (const s of hub.slaves.values()) if (s !== from) sendPeer(hub, s, env.type, data);
}

/** Plugin types as a metric label, capped so a client cannot grow the label set without bound. */
export function pluginLabel(hub: Hub, type: string): string {
  const seen = hub.m.pluginTypes;
  if (seen.has(type)) return type;
  if (seen.size >= 100) return 'other';
  seen.add(type);
  return type;
}
