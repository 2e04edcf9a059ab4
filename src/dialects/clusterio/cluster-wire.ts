import type { LinkCodec } from '../../cluster/link.js';
import type { ClusterMsg, SlaveInfo } from './world/state.js';

/**
 * The Clusterio world's messages between instances (cluster mode), as one JSON object on
 * a Broker topic: the sender instance `f` and the message. Relayed Clusterio data travels
 * as its JSON text in a string, so its numbers keep every digit. Only Muster instances
 * publish on these topics; a message of the wrong shape is still dropped rather than
 * trusted.
 */

/** Broadcasts to every instance's Clusterio world. */
export const CLUSTER_TOPIC = 'clusterio:cluster';

export function encodeClusterMsg(from: string, msg: ClusterMsg): Buffer {
  return Buffer.from(JSON.stringify({ f: from, ...msg }));
}

export function decodeClusterMsg(buf: Buffer): { from: string; msg: ClusterMsg } | undefined {
  let h: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(buf.toString());
    if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
    h = v as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (!str(h.f)) return undefined;
  const msg = toMsg(h);
  return msg ? { from: h.f, msg } : undefined;
}

function str(v: unknown): v is string {
  return typeof v === 'string';
}

function slaveInfo(v: unknown): SlaveInfo | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  if (!str(o.id) || (o.mode !== 'seed' && o.mode !== 'session') || typeof o.attached !== 'boolean' || typeof o.at !== 'number') return undefined;
  return { id: o.id, mode: o.mode, attached: o.attached, at: o.at };
}

function toMsg(h: Record<string, unknown>): ClusterMsg | undefined {
  switch (h.t) {
    case 'up': {
      const slave = slaveInfo(h.slave);
      return slave ? { t: 'up', slave } : undefined;
    }
    case 'down':
      return str(h.id) ? { t: 'down', id: h.id } : undefined;
    case 'sync': {
      if (!Array.isArray(h.slaves) || typeof h.ask !== 'boolean') return undefined;
      const slaves: SlaveInfo[] = [];
      for (const s of h.slaves) {
        const i = slaveInfo(s);
        if (!i) return undefined;
        slaves.push(i);
      }
      return { t: 'sync', slaves, ask: h.ask };
    }
    case 'changed':
      return str(h.ns) && str(h.key) ? { t: 'changed', ns: h.ns, key: h.key } : undefined;
    case 'ask':
      return str(h.id) && str(h.slave) && str(h.type) && str(h.data) ? { t: 'ask', id: h.id, slave: h.slave, type: h.type, data: h.data } : undefined;
    case 'answer':
      return str(h.id) && str(h.type) && str(h.data) ? { t: 'answer', id: h.id, type: h.type, data: h.data } : undefined;
    case 'fail':
      return str(h.id) && str(h.reason) ? { t: 'fail', id: h.id, reason: h.reason } : undefined;
    case 'plugin':
      return str(h.from) && str(h.type) && str(h.data) ? { t: 'plugin', from: h.from, type: h.type, data: h.data } : undefined;
    case 'output':
      return str(h.instance) && str(h.data) ? { t: 'output', instance: h.instance, data: h.data } : undefined;
    default:
      return undefined;
  }
}

/** The link to this dialect on the other instances (`ClusterLink`: the topic for all of them, `<topic>:<id>` for one). */
export const LINK: LinkCodec<ClusterMsg> = { topic: CLUSTER_TOPIC, encode: encodeClusterMsg, decode: decodeClusterMsg };
