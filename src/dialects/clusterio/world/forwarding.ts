/**
 * The forwarding table: the master's requests to peers (a control's request forwarded to
 * the slave hosting its instance, configs pushed to slaves, metrics scrapes), their
 * answers (relayed to the control under its own seq), their deadlines (typed `request`
 * timers) and a target gone before answering. Also answers to a peer, plugin events
 * (broadcast to the other slaves) and instance output to the controls subscribed to it.
 */
import { idOf, numberNode, stringifyTree, type Envelope, type LJson, type LObject } from '../../../protocols/clusterio/codec.js';
import { assignedSlave, instanceId } from '../../../protocols/clusterio/config.js';
import { BROADCAST_PLUGIN_EVENTS, responseTypeOf } from '../../../protocols/clusterio/messages.js';
import { MAX_EXPIRED_SEQS } from '../types.js';
import { requestSlave, slaveOnline, tell } from './cluster.js';
import { feedLink } from './links.js';
import { findInstance } from './messages.js';
import { sendPeer } from './peers.js';
import { beginWrite, deleteInstance, endWrite } from './registry.js';
import type { Gather, InstanceRecord, LinkRec, Origin, Outstanding, PeerRec, Tx } from './state.js';

/** Sends `peer` a request and waits `timeoutMs` for its answer; what then is `origin`'s. */
export function requestPeer(tx: Tx, peer: PeerRec, type: string, data: string, timeoutMs: number, origin: Origin): void {
  const seq = sendPeer(tx, peer, type, data);
  if (seq === undefined) return fail(tx, origin, `Slave ${peer.slaveId} is not connected`);
  const key = `${peer.key}#${seq}`;
  tx.w.pending.set(key, { key, peer, seq, requestType: type, origin });
  tx.out.push({ type: 'timer', key: { kind: 'request', key }, at: tx.now + timeoutMs });
}

export function take(tx: Tx, o: Outstanding): void {
  tx.w.pending.delete(o.key);
  tx.out.push({ type: 'timer', key: { kind: 'request', key: o.key }, at: null });
}

/** A request's answer, for what waits on it. */
export function answer(tx: Tx, origin: Origin, env: Envelope): void {
  switch (origin.kind) {
    case 'relay': {
      const { control, req, instance } = origin;
      if (instance && req.type === 'delete_instance_request' && env.data.error === undefined && tx.w.registry.instances.get(instance.id) === instance.rec) {
        // The slave deleted it: off the registry, and the answer relayed once that is durable.
        const group = beginWrite(tx, { kind: 'deleted', peer: control, req, answer: env });
        deleteInstance(tx, instance.id, group);
        return endWrite(tx, group);
      }
      return relay(tx, control, req, env);
    }
    case 'log':
      if (typeof env.data.error === 'string') logAssignFailed(tx, origin.slave, env.data.error);
      return;
    case 'gather':
      if (Array.isArray(env.data.results)) origin.gather.results[origin.index] = { slaveId: origin.slave, results: env.data.results };
      return gathered(tx, origin.gather);
    case 'remote':
      return tell(tx, origin.instance, { t: 'answer', id: origin.id, type: env.type, data: stringifyTree(env.tree) });
  }
}

/** A request failed (`reason` for the error response), for what waits on it. */
export function fail(tx: Tx, origin: Origin, reason: string): void {
  switch (origin.kind) {
    case 'relay':
      return respondError(tx, origin.control, origin.req, reason);
    case 'log':
      return logAssignFailed(tx, origin.slave, reason);
    case 'gather':
      return gathered(tx, origin.gather);
    case 'remote':
      return tell(tx, origin.instance, { t: 'fail', id: origin.id, reason });
  }
}

function logAssignFailed(tx: Tx, slave: PeerRec, reason: string): void {
  tx.out.push({ type: 'log', level: 'warn', msg: 'clusterio: assign_instance_request failed', data: { slave: slave.slaveId, reason }, peer: `slave:${slave.slaveId}` });
}

function gathered(tx: Tx, g: Gather): void {
  if (--g.left > 0) return;
  tx.out.push({ type: 'reply', call: g.call, status: 200, body: g.results.filter((r) => r !== undefined) });
}

/** A peer answered one of the master's requests. */
export function onResponse(tx: Tx, link: LinkRec, peer: PeerRec, env: Envelope): void {
  const seq = env.data.seq as number;
  const o = tx.w.pending.get(`${peer.key}#${seq}`);
  if (!o) {
    if (peer.expired.delete(seq)) {
      tx.out.push({ type: 'log', level: 'debug', msg: 'clusterio: late answer to a timed-out request ignored', data: { peer: peer.key, seq, type: env.type } });
      return;
    }
    return feedLink(tx, link, { type: 'violation', detail: `Received ${env.type} to unknown request seq ${seq}` });
  }
  const expected = responseTypeOf(o.requestType);
  if (expected !== env.type) {
    return feedLink(tx, link, { type: 'violation', detail: `Received ${env.type} to request seq ${seq}, which expects ${expected}` });
  }
  take(tx, o);
  answer(tx, o.origin, env);
}

/** A request's deadline passed. */
export function onRequestTimeout(tx: Tx, key: string): void {
  const o = tx.w.pending.get(key);
  if (!o) {
    // Cluster mode: a request asked of another instance.
    const a = tx.w.asks.get(key);
    if (!a) return;
    tx.w.asks.delete(key);
    return fail(tx, a.origin, `Slave ${a.slaveId} did not answer ${a.requestType} in time`);
  }
  tx.w.pending.delete(key);
  const { peer, seq, requestType } = o;
  expire(peer, seq);
  fail(tx, o.origin, `Slave ${peer.slaveId} did not answer ${requestType} in time`);
}

/** A late answer to `seq` will be ignored, not taken for a protocol error. */
export function expire(peer: PeerRec, seq: number): void {
  peer.expired.add(seq);
  if (peer.expired.size > MAX_EXPIRED_SEQS) peer.expired.delete(peer.expired.values().next().value as number);
}

/** The peer is gone for good: every request it was asked fails. */
export function failPeer(tx: Tx, peer: PeerRec, why: string): void {
  for (const o of [...tx.w.pending.values()]) {
    if (o.peer !== peer) continue;
    take(tx, o);
    fail(tx, o.origin, `Slave ${peer.slaveId} went offline (${why}) before answering ${o.requestType}`);
  }
}

/** Shutdown: every request still waiting fails. */
export function failAll(tx: Tx, reason: string): void {
  for (const o of [...tx.w.pending.values()]) {
    take(tx, o);
    fail(tx, o.origin, reason);
  }
  for (const a of [...tx.w.asks.values()]) {
    tx.w.asks.delete(a.key);
    tx.out.push({ type: 'timer', key: { kind: 'request', key: a.key }, at: null });
    fail(tx, a.origin, reason);
  }
}

/** Answers a peer's request: `{seq, ...body}`. */
export function respond(tx: Tx, peer: PeerRec, req: Envelope, body: LObject = {}): void {
  if (!peer.alive) return;
  sendPeer(tx, peer, responseTypeOf(req.type), stringifyTree({ seq: numberNode(String(req.seq)), ...body }));
}

export function respondError(tx: Tx, peer: PeerRec, req: Envelope, error: string): void {
  if (!peer.alive) return;
  sendPeer(tx, peer, responseTypeOf(req.type), stringifyTree({ seq: numberNode(String(req.seq)), error }));
}

/** Relays a slave's answer to a control under the control's seq, the data otherwise unchanged. */
export function relay(tx: Tx, control: PeerRec, req: Envelope, env: Envelope): void {
  if (!control.alive) return;
  const out: LObject = {};
  for (const [k, v] of Object.entries(env.tree)) if (k !== 'seq') out[k] = v;
  out.seq = numberNode(String(req.seq));
  sendPeer(tx, control, responseTypeOf(req.type), stringifyTree(out));
}

/** A control's request for an instance, forwarded to the slave hosting it. */
export function forward(tx: Tx, peer: PeerRec, env: Envelope): void {
  const rec = findInstance(tx, peer, env);
  if (!rec) return;
  const id = instanceId(rec.config);
  const slaveId = assignedSlave(rec.config);
  if (slaveId === null) return respondError(tx, peer, env, `Instance ${id} is not assigned to a slave`);
  if (!slaveOnline(tx, slaveId)) return respondError(tx, peer, env, `Slave ${slaveId} hosting instance ${id} is not connected`);
  tx.out.push({ type: 'forwarded', requestType: env.type });
  // Here, or on the instance it is connected to (cluster mode).
  requestSlave(tx, slaveId, env.type, stringifyTree(env.tree), { kind: 'relay', control: peer, req: env, instance: { id, rec } });
}

export function assignData(rec: InstanceRecord): string {
  return stringifyTree({ instance_id: numberNode(instanceId(rec.config)), serialized_config: rec.config as unknown as LJson });
}

/** Sends the slave (a peer here, or the id of one on another instance) `assign_instance_request` for `rec` and relays its answer to `peer`. */
export function pushAssignment(tx: Tx, slave: PeerRec | string, rec: InstanceRecord, peer: PeerRec, req: Envelope): void {
  const origin: Origin = { kind: 'relay', control: peer, req };
  if (typeof slave !== 'string') return requestPeer(tx, slave, 'assign_instance_request', assignData(rec), tx.cfg.requestTimeout, origin);
  if (!requestSlave(tx, slave, 'assign_instance_request', assignData(rec), origin)) fail(tx, origin, `Slave ${slave} is not connected`);
}

/** A /metrics scrape: every attached slave is asked; the call is answered with what came back. */
export function scrape(tx: Tx, call: string): void {
  const slaves = [...tx.w.slaves.values()].filter((p) => p.link !== undefined && !p.link.closing);
  // One more than asked: the answer goes once every slave has answered and this loop is done.
  const gather: Gather = { call, left: slaves.length + 1, results: [] };
  slaves.forEach((slave, index) => {
    requestPeer(tx, slave, 'statistics_exporter:get_metrics_request', '{}', tx.cfg.metricsTimeout, { kind: 'gather', gather, index, slave: slave.slaveId });
  });
  gathered(tx, gather);
}

export function instanceOutput(tx: Tx, env: Envelope): void {
  const id = idOf(env.tree.instance_id) as string;
  const data = stringifyTree(env.tree);
  for (const c of tx.w.controls) if (c.subscriptions.has(id)) sendPeer(tx, c, 'instance_output_event', data);
  tell(tx, null, { t: 'output', instance: id, data });
}

export function pluginEvent(tx: Tx, from: PeerRec, env: Envelope): void {
  const label = pluginLabel(tx, env.type);
  if (!BROADCAST_PLUGIN_EVENTS.has(env.type)) {
    tx.out.push({ type: 'plugin', label, action: 'dropped' });
    return;
  }
  tx.out.push({ type: 'plugin', label, action: 'broadcast' });
  const data = stringifyTree(env.tree);
  for (const s of tx.w.slaves.values()) if (s !== from) sendPeer(tx, s, env.type, data);
  tell(tx, null, { t: 'plugin', from: from.slaveId, type: env.type, data });
}

/** Plugin types as a metric label, capped so a client cannot grow the label set without bound. */
function pluginLabel(tx: Tx, type: string): string {
  const seen = tx.w.pluginTypes;
  if (seen.has(type)) return type;
  if (seen.size >= 100) return 'other';
  seen.add(type);
  return type;
}
