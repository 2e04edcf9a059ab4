import type { LinkCodec } from '../../cluster/link.js';
import { decodeInfo } from '../../protocols/gamelist/messages.js';
import type { JoinAnswer, JoinFailure } from '../../protocols/gamelist/api.js';
import type { ClusterMsg, ReplicaInfo } from './world-cluster.js';

/**
 * The gamelist's messages between instances, as JSON on Broker topics: the sender
 * instance `f` and the message. Only Muster instances publish on these topics; a message
 * of the wrong shape is still dropped rather than trusted.
 */

/** Broadcasts to every instance's gamelist. */
export const GAMELIST_CLUSTER_TOPIC = 'gamelist:cluster';

export function encodeGamelistMsg(from: string, msg: ClusterMsg): Buffer {
  return Buffer.from(JSON.stringify({ f: from, ...msg }));
}

export function decodeGamelistMsg(buf: Buffer): { from: string; msg: ClusterMsg } | undefined {
  let h: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(buf.toString());
    if (!isObj(v)) return undefined;
    h = v;
  } catch {
    return undefined;
  }
  if (!str(h.f)) return undefined;
  const msg = toMsg(h);
  return msg ? { from: h.f, msg } : undefined;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: unknown): v is string {
  return typeof v === 'string';
}

function num(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function replica(v: unknown): ReplicaInfo | undefined {
  if (!isObj(v) || !str(v.serverId) || !str(v.conn) || !str(v.address) || !num(v.registeredAt) || !num(v.lastRefresh)) return undefined;
  const info = decodeInfo(v.info);
  if (typeof info === 'string') return undefined;
  return { serverId: v.serverId, info, registeredAt: v.registeredAt, lastRefresh: v.lastRefresh, conn: v.conn, address: v.address };
}

function answer(v: unknown): JoinAnswer | undefined {
  if (!isObj(v) || typeof v.success !== 'boolean') return undefined;
  const a: JoinAnswer = { success: v.success };
  if (v.conv !== undefined) {
    if (!num(v.conv)) return undefined;
    a.conv = v.conv;
  }
  if (v.error !== undefined) {
    const e = v.error;
    if (!isObj(e) || !str(e.msg) || !(str(e.type) || num(e.type))) return undefined;
    a.error = { type: e.type as number | JoinFailure, msg: e.msg };
  }
  return a;
}

function toMsg(h: Record<string, unknown>): ClusterMsg | undefined {
  switch (h.t) {
    case 'up': {
      const s = replica(h.s);
      return s ? { t: 'up', s } : undefined;
    }
    case 'down':
      if (!str(h.id) || (h.keep !== undefined && !str(h.keep))) return undefined;
      return str(h.keep) ? { t: 'down', id: h.id, keep: h.keep } : { t: 'down', id: h.id };
    case 'claim':
      return str(h.keep) ? { t: 'claim', keep: h.keep } : undefined;
    case 'sync': {
      if (!Array.isArray(h.servers) || typeof h.ask !== 'boolean') return undefined;
      const servers: ReplicaInfo[] = [];
      for (const x of h.servers) {
        const s = replica(x);
        if (!s) return undefined;
        servers.push(s);
      }
      return { t: 'sync', servers, ask: h.ask };
    }
    case 'join':
      return str(h.id) && str(h.serverId) ? { t: 'join', id: h.id, serverId: h.serverId, body: h.body } : undefined;
    case 'joined': {
      const body = answer(h.body);
      return str(h.id) && num(h.status) && Number.isInteger(h.status) && body ? { t: 'joined', id: h.id, status: h.status, body } : undefined;
    }
    default:
      return undefined;
  }
}

/** The link to this dialect on the other instances (`ClusterLink`: the topic for all of them, `<topic>:<id>` for one). */
export const LINK: LinkCodec<ClusterMsg> = { topic: GAMELIST_CLUSTER_TOPIC, encode: encodeGamelistMsg, decode: decodeGamelistMsg };
