import type { LinkCodec } from '../../cluster/link.js';
import type { ClusterMsg, ServiceInfo } from './world-state.js';

/**
 * The bus's messages between instances, as bytes on a Broker topic: one JSON header line
 * (the sender instance `f` and the message without its frame), then the frame's bytes as
 * they are. Only Muster instances publish on these topics; a message of the wrong shape
 * is still dropped rather than trusted.
 */

/** Broadcasts to every instance's bus. */
export const CLUSTER_TOPIC = 'bus:cluster';

const EMPTY = Buffer.alloc(0);

export function encodeClusterMsg(from: string, msg: ClusterMsg): Buffer {
  let frame: Buffer = EMPTY;
  let head: Record<string, unknown>;
  if (msg.t === 'ask' || msg.t === 'reply') {
    const { frame: f, ...rest } = msg;
    frame = f;
    head = { f: from, ...rest };
  } else head = { f: from, ...msg };
  // One buffer, written in place (this is on every request and reply across instances).
  const text = JSON.stringify(head);
  const len = Buffer.byteLength(text);
  const out = Buffer.allocUnsafe(len + 1 + frame.length);
  out.write(text, 0, len);
  out[len] = 0x0a;
  frame.copy(out, len + 1);
  return out;
}

export function decodeClusterMsg(buf: Buffer): { from: string; msg: ClusterMsg } | undefined {
  const nl = buf.indexOf(0x0a);
  if (nl < 0) return undefined;
  let h: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(buf.subarray(0, nl).toString());
    if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
    h = v as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const from = h.f;
  if (typeof from !== 'string') return undefined;
  const frame = buf.subarray(nl + 1);
  const msg = toMsg(h, frame);
  return msg ? { from, msg } : undefined;
}

function str(v: unknown): v is string {
  return typeof v === 'string';
}

function strings(v: unknown): v is string[] {
  return Array.isArray(v) && v.every(str);
}

function serviceInfo(v: unknown): ServiceInfo | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  if (!str(o.id) || !strings(o.groups) || (o.name !== undefined && !str(o.name))) return undefined;
  return o.name !== undefined ? { id: o.id, name: o.name as string, groups: o.groups } : { id: o.id, groups: o.groups };
}

function toMsg(h: Record<string, unknown>, frame: Buffer): ClusterMsg | undefined {
  switch (h.t) {
    case 'up': {
      const svc = serviceInfo(h.svc);
      return svc ? { t: 'up', svc } : undefined;
    }
    case 'down':
      return str(h.id) ? { t: 'down', id: h.id } : undefined;
    case 'sync': {
      if (!Array.isArray(h.services) || typeof h.ask !== 'boolean') return undefined;
      const services: ServiceInfo[] = [];
      for (const s of h.services) {
        const i = serviceInfo(s);
        if (!i) return undefined;
        services.push(i);
      }
      return { t: 'sync', services, ask: h.ask };
    }
    case 'ask':
      if (!str(h.requester) || !str(h.id) || !strings(h.to) || typeof h.collect !== 'boolean') return undefined;
      return { t: 'ask', requester: h.requester, id: h.id, to: h.to, collect: h.collect, frame };
    case 'reply':
      if (!str(h.svc) || !str(h.requester) || !str(h.id)) return undefined;
      return { t: 'reply', svc: h.svc, requester: h.requester, id: h.id, frame };
    case 'gone':
      if (!str(h.svc) || !str(h.requester) || !str(h.id)) return undefined;
      return { t: 'gone', svc: h.svc, requester: h.requester, id: h.id };
    default:
      return undefined;
  }
}

/** The link to this dialect on the other instances (`ClusterLink`: the topic for all of them, `<topic>:<id>` for one). */
export const LINK: LinkCodec<ClusterMsg> = { topic: CLUSTER_TOPIC, encode: encodeClusterMsg, decode: decodeClusterMsg };
