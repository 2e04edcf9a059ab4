/**
 * The bus across instances (cluster mode), as part of the pure world.
 *
 * - Each instance's world holds replicas of the services identified on the others
 *   (`Service.instance` set): every instance announces its services as they identify
 *   (`up`) and leave (`down`), and sends all of them (`sync`) to an instance that comes
 *   up. So names, groups and GLOBAL see the whole cluster, and a dead instance's services
 *   go when its peer reports it gone.
 * - Plain EVENTs to a replica go through the Broker (it carries them to the instance
 *   holding the connection). A request goes to another instance as an `ask`, with the
 *   frame: that instance delivers it to the services named and records that they were
 *   asked (a Request with `origin`), so their REPLYs go back (`reply`), and one that leaves
 *   or was not there is reported (`gone`). The requester's instance keeps the request
 *   proper, keyed by (requester, id) as always, and checks each REPLY against who it
 *   asked: a REPLY from a service that was not asked is still dropped.
 * - The world knows no instance id of its own and no broker: messages come in as `remote`
 *   and `peer` events and go out as `cluster` effects (the glue carries them).
 */
import { assertNever } from '../../core/runtime.js';
import type { ConnState } from './machine.js';
import { answered, dropAsked, finish, track, unindex } from './requests.js';
import { forget } from './world.js';
import type { BusWorld, BusWorldConfig, ClusterMsg, Eff, Request, Service, ServiceInfo } from './world-state.js';

const REPLICA: ConnState = { phase: 'identified' };

export function info(svc: Service): ServiceInfo {
  return svc.name !== undefined ? { id: svc.conn, name: svc.name, groups: [...(svc.groups ?? [])] } : { id: svc.conn, groups: [...(svc.groups ?? [])] };
}

function localInfos(w: BusWorld): ServiceInfo[] {
  const out: ServiceInfo[] = [];
  for (const s of w.byId.values()) if (s.instance === undefined) out.push(info(s));
  return out;
}

/** Sends request `r` (with its relayed frame) to the instances of its remote recipients. */
export function askRemote(w: BusWorld, r: Request, frame: Buffer, out: Eff[]): void {
  const by = new Map<string, string[]>();
  for (const rid of r.recipients) {
    const inst = w.byId.get(rid)?.instance;
    if (inst === undefined) continue;
    const list = by.get(inst);
    if (list) list.push(rid);
    else by.set(inst, [rid]);
  }
  for (const [inst, to] of by) out.push({ type: 'cluster', to: inst, msg: { t: 'ask', requester: r.requester, id: r.id, to, collect: r.collect, frame } });
}

export function onPeer(w: BusWorld, instance: string, up: boolean, out: Eff[]): void {
  if (up) {
    out.push({ type: 'cluster', to: instance, msg: { t: 'sync', services: localInfos(w), ask: true } });
    return;
  }
  for (const id of [...(w.remote.get(instance) ?? [])]) {
    const s = w.byId.get(id);
    if (s) dropReplica(w, s, out);
  }
  w.remote.delete(instance);
  // What its requesters asked services here: nobody is left to take the answers.
  for (const r of [...w.pending.values()]) {
    if (r.origin !== instance) continue;
    w.pending.delete(r.key);
    unindex(w, r);
  }
}

export function onRemote(w: BusWorld, from: string, msg: ClusterMsg, cfg: BusWorldConfig, out: Eff[]): void {
  switch (msg.t) {
    case 'up':
      addReplica(w, from, msg.svc, out);
      return;
    case 'down': {
      const s = w.byId.get(msg.id);
      if (s && s.instance === from) dropReplica(w, s, out);
      return;
    }
    case 'sync': {
      const keep = new Set(msg.services.map((i) => i.id));
      for (const id of [...(w.remote.get(from) ?? [])]) {
        const s = w.byId.get(id);
        if (s && !keep.has(id)) dropReplica(w, s, out);
      }
      for (const i of msg.services) addReplica(w, from, i, out);
      if (msg.ask) out.push({ type: 'cluster', to: from, msg: { t: 'sync', services: localInfos(w), ask: false } });
      return;
    }
    case 'ask':
      asked(w, from, msg, cfg, out);
      return;
    case 'reply':
    case 'gone': {
      const r = w.pending.get(`${msg.requester}/${msg.id}`);
      const s = w.byId.get(msg.svc);
      if (!r || r.origin !== undefined || !s || s.instance !== from || s.asked?.get(msg.id)?.includes(r) !== true) {
        if (msg.t === 'reply') {
          out.push({ type: 'count', metric: 'repliesDropped' });
          out.push({ type: 'log', level: 'debug', msg: 'bus: REPLY from another instance that answers no request its sender was asked; dropped', data: { service: msg.svc, id: msg.id } });
        }
        return;
      }
      if (msg.t === 'reply') return answered(w, s, r, msg.frame, out);
      dropAsked(s, msg.id, r);
      const gone = (r.gone ??= new Set());
      gone.add(s.conn);
      if (!r.collect || r.answers + gone.size >= r.recipients.size) finish(w, r, 'gone', out);
      return;
    }
    default:
      assertNever(msg, 'cluster message');
  }
}

/** Another instance's requester asks services here: deliver, and remember who was asked. */
function asked(w: BusWorld, from: string, msg: Extract<ClusterMsg, { t: 'ask' }>, cfg: BusWorldConfig, out: Eff[]): void {
  // A requester connected here is never another instance's to name.
  if (w.services.has(msg.requester)) return;
  const key = `${msg.requester}/${msg.id}`;
  const old = w.pending.get(key);
  if (old) {
    w.pending.delete(key);
    unindex(w, old);
  }
  const recipients = new Set<string>();
  for (const id of msg.to) {
    const s = w.byId.get(id);
    if (s && s.instance === undefined && s.identified) recipients.add(id);
    else out.push({ type: 'cluster', to: from, msg: { t: 'gone', svc: id, requester: msg.requester, id: msg.id } });
  }
  if (recipients.size === 0) return;
  const r: Request = {
    key,
    requester: msg.requester,
    id: msg.id,
    identifier: undefined,
    want: 'all',
    recipients,
    answers: 0,
    replied: undefined,
    gone: undefined,
    expected: recipients.size,
    collect: msg.collect,
    startedAt: w.now,
    // This instance's timeout: the requester's instance answers TIMEOUT at its own.
    deadline: w.now + Math.max(0, cfg.requestTimeout),
    target: msg.collect ? 'GROUP' : 'DIRECT',
    origin: from,
  };
  track(w, r, out);
  for (const id of recipients) out.push({ type: 'send', conn: id, frame: msg.frame });
}

function addReplica(w: BusWorld, instance: string, i: ServiceInfo, out: Eff[]): void {
  if (w.byId.has(i.id)) return;
  const s: Service = {
    conn: i.id,
    instance,
    state: REPLICA,
    headerToken: undefined,
    name: i.name,
    identified: true,
    groups: new Set(i.groups),
    sourceTail: undefined,
    target: undefined,
    asked: undefined,
    events: undefined,
    eventBytes: undefined,
  };
  if (i.name !== undefined) {
    if (w.names.has(i.name)) {
      out.push({ type: 'log', level: 'warn', msg: 'bus: a service name is in use on two instances; DIRECT by name reaches the one known first', data: { name: i.name, service: i.id, instance } });
    } else w.names.set(i.name, s);
  }
  w.byId.set(i.id, s);
  for (const g of s.groups ?? []) {
    let members = w.groups.get(g);
    if (!members) w.groups.set(g, (members = new Set()));
    members.add(i.id);
  }
  let ids = w.remote.get(instance);
  if (!ids) w.remote.set(instance, (ids = new Set()));
  ids.add(i.id);
}

function dropReplica(w: BusWorld, s: Service, out: Eff[]): void {
  forget(w, s, out);
  const inst = s.instance as string;
  const ids = w.remote.get(inst);
  ids?.delete(s.conn);
  if (ids?.size === 0) w.remote.delete(inst);
}
