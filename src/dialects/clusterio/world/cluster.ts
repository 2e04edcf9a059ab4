/**
 * Clusterio across instances (cluster mode), as part of the pure world.
 *
 * - Slaves: each instance announces the slaves connected to it (`up` on register, resume
 *   and detach, `down` when one goes) and sends all of them (`sync`) to an instance that
 *   comes up; the others keep them as replicas (`w.replicas`: which slave is on which
 *   instance). A dead instance's replicas go when its peer is reported gone.
 * - One master, one connection per slave id: of one id registered on two instances, the
 *   later registration wins, as on one instance. Each side compares the two registrations
 *   the same way (time, then instance id), and the older connection gets
 *   `close {reason: "Registered from another connection"}`. A registration made while a
 *   replica of the id is known counts as later than it.
 * - Requests for a slave on another instance go there as an `ask` (the request's data as
 *   it came); that instance sends it to the slave as its own request (its numbering, its
 *   timeout) and sends back the slave's `answer`, or a `fail` with the reason. The asking
 *   instance keeps the request proper (what to do with the answer, its deadline), so
 *   timeouts and errors read as on one instance.
 * - Registry: after a registry write is durable, the writer says `changed`; the others read
 *   the record again from the shared store (`reread`), and the whole registry when an
 *   instance comes up (what was said while one was away is not lost). A record written
 *   here after a read was issued is newer than what the read returns: it is kept.
 * - Broadcast plugin events and instance output reach the slaves and subscribed controls
 *   of every instance.
 *
 * The world knows its own instance id from its config (`cluster`); without one, nothing
 * here emits anything. Messages come in as `remote` and `peer` events and go out as
 * `cluster` effects (the glue carries them).
 */
import { parseTree, type Envelope, type LObject } from '../../../protocols/clusterio/codec.js';
import { instanceId } from '../../../protocols/clusterio/config.js';
import { answer, expire, fail, requestPeer, take } from './forwarding.js';
import { replace, sendPeer } from './peers.js';
import { INSTANCES_NS, SLAVES_NS } from './registry.js';
import type { ClusterMsg, InstanceRecord, Origin, PeerRec, SlaveInfo, Tx, WorldEvent } from './state.js';

/** Sends `msg` to instance `to` (null: every other), in cluster mode. */
export function tell(tx: Tx, to: string | null, msg: ClusterMsg, afterWrites = false): void {
  if (!tx.cfg.cluster) return;
  tx.out.push(afterWrites ? { type: 'cluster', to, msg, afterWrites } : { type: 'cluster', to, msg });
}

function infoOf(peer: PeerRec): SlaveInfo {
  return { id: peer.slaveId, mode: peer.mode, attached: peer.link !== undefined, at: peer.registeredAt };
}

/** A slave here registered, resumed or lost its socket (its session waits). */
export function slaveUp(tx: Tx, peer: PeerRec): void {
  if (peer.role === 'slave') tell(tx, null, { t: 'up', slave: infoOf(peer) });
}

export function slaveDown(tx: Tx, slaveId: string): void {
  tell(tx, null, { t: 'down', id: slaveId });
}

/** When a slave registering here now registers: after any registration of it known elsewhere. */
export function registrationTime(tx: Tx, slaveId: string): number {
  const r = tx.w.replicas.get(slaveId);
  return r ? Math.max(tx.now, r.at + 1) : tx.now;
}

/** A registry record was written here: once durable, the others read it again. */
export function recordWritten(tx: Tx, ns: string, key: string): void {
  if (!tx.cfg.cluster) return;
  tx.w.written.set(`${ns}\n${key}`, ++tx.w.writeGen);
  tell(tx, null, { t: 'changed', ns, key }, true);
}

/** Whether slave `id` is connected here or to another instance. */
export function slaveOnline(tx: Tx, id: string): boolean {
  return tx.w.slaves.has(id) || tx.w.replicas.has(id);
}

/** Sends slave `slaveId` (here or on another instance) a request; false when it is on none. */
export function requestSlave(tx: Tx, slaveId: string, type: string, data: string, origin: Origin): boolean {
  const local = tx.w.slaves.get(slaveId);
  if (local) {
    requestPeer(tx, local, type, data, tx.cfg.requestTimeout, origin);
    return true;
  }
  const r = tx.w.replicas.get(slaveId);
  if (!r) return false;
  const key = `ask#${tx.w.nextAsk++}`;
  tx.w.asks.set(key, { key, instance: r.instance, slaveId, requestType: type, origin });
  tx.out.push({ type: 'timer', key: { kind: 'request', key }, at: tx.now + tx.cfg.requestTimeout });
  tell(tx, r.instance, { t: 'ask', id: key, slave: slaveId, type, data });
  return true;
}

function takeAsk(tx: Tx, key: string): void {
  tx.w.asks.delete(key);
  tx.out.push({ type: 'timer', key: { kind: 'request', key }, at: null });
}

export function onPeer(tx: Tx, instance: string, up: boolean): void {
  const { w } = tx;
  if (up) {
    const mine = [...w.slaves.values()].map(infoOf);
    tell(tx, instance, { t: 'sync', slaves: mine, ask: true });
    reread(tx);
    return;
  }
  for (const [id, r] of [...w.replicas]) if (r.instance === instance) w.replicas.delete(id);
  for (const a of [...w.asks.values()]) {
    if (a.instance !== instance) continue;
    takeAsk(tx, a.key);
    fail(tx, a.origin, `Slave ${a.slaveId} went offline (its Muster instance ${instance} is gone) before answering ${a.requestType}`);
  }
  // What it asked slaves here: nobody is left to take the answers, which are ignored.
  for (const o of [...w.pending.values()]) {
    if (o.origin.kind !== 'remote' || o.origin.instance !== instance) continue;
    take(tx, o);
    expire(o.peer, o.seq);
  }
}

export function onRemote(tx: Tx, from: string, msg: ClusterMsg): void {
  const { w } = tx;
  switch (msg.t) {
    case 'up':
      return accept(tx, from, msg.slave);
    case 'down': {
      if (w.replicas.get(msg.id)?.instance === from) w.replicas.delete(msg.id);
      return;
    }
    case 'sync': {
      const keep = new Set(msg.slaves.map((s) => s.id));
      for (const [id, r] of [...w.replicas]) if (r.instance === from && !keep.has(id)) w.replicas.delete(id);
      for (const s of msg.slaves) accept(tx, from, s);
      if (msg.ask) tell(tx, from, { t: 'sync', slaves: [...w.slaves.values()].map(infoOf), ask: false });
      return;
    }
    case 'changed':
      return reread(tx, msg.ns, msg.key);
    case 'ask': {
      const slave = w.slaves.get(msg.slave);
      if (!slave) return tell(tx, from, { t: 'fail', id: msg.id, reason: `Slave ${msg.slave} is not connected` });
      return requestPeer(tx, slave, msg.type, msg.data, tx.cfg.requestTimeout, { kind: 'remote', instance: from, id: msg.id });
    }
    case 'answer':
    case 'fail': {
      const a = w.asks.get(msg.id);
      if (!a || a.instance !== from) {
        tx.out.push({ type: 'log', level: 'debug', msg: 'clusterio: late answer from another instance ignored', data: { instance: from, id: msg.id } });
        return;
      }
      takeAsk(tx, a.key);
      if (msg.t === 'fail') return fail(tx, a.origin, msg.reason);
      let env: Envelope;
      try {
        env = { seq: 0, type: msg.type, data: JSON.parse(msg.data) as Record<string, unknown>, tree: parseTree(msg.data) as LObject };
      } catch {
        return fail(tx, a.origin, `Slave ${a.slaveId} sent an answer that could not be read`);
      }
      return answer(tx, a.origin, env);
    }
    case 'plugin':
      for (const s of w.slaves.values()) if (s.slaveId !== msg.from) sendPeer(tx, s, msg.type, msg.data);
      return;
    case 'output':
      for (const c of w.controls) if (c.subscriptions.has(msg.instance)) sendPeer(tx, c, 'instance_output_event', msg.data);
      return;
  }
}

/** Another instance has slave `info`: a replica, unless a later registration of it is here. */
function accept(tx: Tx, from: string, info: SlaveInfo): void {
  const { w } = tx;
  const local = w.slaves.get(info.id);
  if (local) {
    // Ours is the later one: the other instance closes its connection when it hears of ours.
    if (!later(info.at, from, local.registeredAt, tx.cfg.cluster?.instance ?? '')) return;
    replace(tx, local);
  }
  // A third instance's later registration stays: this one is about to be replaced there.
  const known = w.replicas.get(info.id);
  if (known && known.instance !== from && later(known.at, known.instance, info.at, from)) return;
  w.replicas.set(info.id, { ...info, instance: from });
}

/** Whether registration (at, instance) is later than (otherAt, other): by time, then instance id. */
function later(at: number, instance: string, otherAt: number, other: string): boolean {
  return at > otherAt || (at === otherAt && instance > other);
}

/** Asks for the registry (or one record) to be read again from the store. */
function reread(tx: Tx, ns?: string, key?: string): void {
  if (!tx.cfg.cluster) return;
  tx.w.rereads++;
  tx.out.push(ns !== undefined && key !== undefined ? { type: 'reread', gen: tx.w.writeGen, ns, key } : { type: 'reread', gen: tx.w.writeGen });
}

/** Records read again from the store; a record written here since the read was issued stays as it is. */
export function onRegistryRead(tx: Tx, ev: Extract<WorldEvent, { type: 'registryRead' }>): void {
  const { w } = tx;
  w.rereads = Math.max(0, w.rereads - 1);
  try {
    if (ev.failed !== true) apply(tx, ev);
  } finally {
    // With no read out, no write here can be overtaken by one: the numbers are not needed.
    if (w.rereads === 0) w.written.clear();
  }
}

function apply(tx: Tx, ev: Extract<WorldEvent, { type: 'registryRead' }>): void {
  const { w } = tx;
  const fresh = (ns: string, key: string): boolean => (w.written.get(`${ns}\n${key}`) ?? 0) <= ev.gen;
  const all = ev.key === undefined;
  if (all || ev.ns === SLAVES_NS) {
    for (const s of ev.slaves) if ((all || s.id === ev.key) && fresh(SLAVES_NS, s.id)) w.registry.slaves.set(s.id, s);
  }
  if (all || ev.ns === INSTANCES_NS) {
    const read = new Map<string, InstanceRecord>();
    for (const rec of ev.instances) read.set(instanceId(rec.config), rec);
    const keys = all ? new Set([...read.keys(), ...w.registry.instances.keys()]) : new Set([ev.key as string]);
    for (const id of keys) {
      if (!fresh(INSTANCES_NS, id)) continue;
      const rec = read.get(id);
      const cur = w.registry.instances.get(id);
      if (!rec) w.registry.instances.delete(id);
      else if (cur) {
        // In place: what waits on the record (a relayed delete) still finds it.
        cur.config = rec.config;
        cur.status = rec.status;
      } else w.registry.instances.set(id, rec);
    }
  }
}
