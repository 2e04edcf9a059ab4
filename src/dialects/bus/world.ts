/**
 * The bus world's step: routing (GLOBAL/GROUP/DIRECT), groups, pending requests and
 * who was asked what, as a pure function over the state in world-state.ts. Services on
 * other instances (cluster mode) are replicas in the same maps; world-cluster.ts keeps
 * them and carries requests and replies across.
 */
import { CloseCode } from '../../common/errors.js';
import type { Stepped } from '../../core/runtime.js';
import { TokenBucket } from '../../core/ratelimit.js';
import {
  DisconnectReason,
  encode,
  Op,
  ReplyError,
  type BusMessage,
  type IdentifyData,
} from '../../protocols/bus/messages.js';
import { initialState, routable, step as machineStep, type ConnState } from './machine.js';
import { relayed } from './relay.js';
import { answered, notDelivered, recipientGone, track, unindex } from './requests.js';
import { askRemote, info, onPeer, onRemote } from './world-cluster.js';
import { claimName, hold, onClaimed } from './world-names.js';
import { onTimer } from './world-timers.js';
import { arm, connTarget, type BusEffect, type BusWorld, type BusWorldConfig, type Eff, type Request, type Service, type TimerKey, type WorldEvent } from './world-state.js';

export * from './world-state.js';

const NO_ROUTE_COUNT: BusEffect = { type: 'count', metric: 'noRoute' };
const RATE_LIMITED_COUNT: BusEffect = { type: 'count', metric: 'rateLimited' };
const DROPPED_COUNT: BusEffect = { type: 'count', metric: 'repliesDropped' };
const NONE: readonly Eff[] = [];

export function timerId(key: TimerKey): string {
  return key;
}

export function step(w: BusWorld, ev: WorldEvent, cfg: BusWorldConfig): Stepped<BusWorld, Eff> {
  w.now = ev.now;
  if (ev.type !== 'slow') w.routing = undefined;
  const out: Eff[] = [];
  switch (ev.type) {
    case 'open': {
      w.services.set(ev.conn, {
        conn: ev.conn,
        instance: undefined,
        state: initialState,
        headerToken: ev.headerToken,
        name: undefined,
        identified: false,
        groups: undefined,
        sourceTail: undefined,
        target: undefined,
        asked: undefined,
        events: undefined,
        eventBytes: undefined,
      });
      const at = ev.now + Math.max(0, cfg.identifyTimeout);
      w.identifying.set(ev.conn, at);
      arm(w, out, 'identify', at);
      break;
    }
    case 'frame': {
      const svc = w.services.get(ev.conn);
      if (!svc) break;
      if (svc.claim) {
        hold(w, svc, ev.data, ev.binary, out);
        break;
      }
      // The common case without the machine's step objects: an identified service's
      // EVENT or REPLY, whose only outcome is to be routed (machine.ts, `routable`).
      const msg = routable(svc.state, ev, cfg.machine);
      if (msg === undefined) feed(w, svc, ev, cfg, out, ev.data);
      else if (msg.op === Op.EVENT) route(w, svc, msg, cfg, out, ev.data);
      else reply(w, svc, msg, out, ev.data);
      break;
    }
    case 'closed': {
      const svc = w.services.get(ev.conn);
      if (!svc) break;
      unregister(w, svc, out);
      svc.state = CLOSED;
      w.services.delete(ev.conn);
      break;
    }
    case 'slow': {
      const svc = w.services.get(ev.conn);
      if (!svc) break;
      out.push({ type: 'log', level: 'warn', msg: 'bus: slow consumer cut', data: { service: svc.conn, buffered: ev.buffered } });
      // A receiver cut while the current frame's request was being delivered to it never got it.
      const r = ev.during ? w.routing : undefined;
      if (r && r.recipients.has(svc.conn)) notDelivered(r, svc);
      disconnect(w, svc, DisconnectReason.SLOW_CONSUMER, `more than ${cfg.maxBufferedBytes} bytes unread`, out);
      if (r && !r.collect && r.recipients.size === 0 && w.pending.get(r.key) === r) {
        // The DIRECT recipient was cut while the request was being queued.
        w.pending.delete(r.key);
        w.routing = undefined;
        noRoute(r.requester, r.id, r.target, r.identifier, out);
      } else if (r && r.collect && r.expected === 0 && w.pending.get(r.key) === r) {
        w.pending.delete(r.key);
        w.routing = undefined;
        out.push({ type: 'send', conn: r.requester, frame: encode.replyEnd(r.id, 0, 0, []) });
      }
      break;
    }
    case 'kick': {
      const svc = w.services.get(ev.conn);
      if (svc) disconnect(w, svc, DisconnectReason.KICKED, 'kicked by an operator', out);
      break;
    }
    case 'goodbye': {
      const svc = w.services.get(ev.conn);
      if (svc) disconnect(w, svc, DisconnectReason.SHUTTING_DOWN, undefined, out);
      break;
    }
    case 'shutdown':
      for (const r of w.pending.values()) if (r.origin === undefined) out.push({ type: 'close', conn: r.requester, code: CloseCode.GOING_AWAY, reason: DisconnectReason.SHUTTING_DOWN });
      w.pending.clear();
      break;
    case 'remote':
      onRemote(w, ev.from, ev.msg, cfg, out);
      break;
    case 'peer':
      onPeer(w, ev.instance, ev.up, out);
      break;
    case 'claimed':
      onClaimed(w, ev, cfg, out);
      break;
    case 'timer':
      onTimer(w, ev.key, ev.now, cfg, out);
      break;
  }
  return { state: w, effects: out.length === 0 ? NONE : out };
}

const CLOSED: ConnState = { phase: 'closed' };

export function feed(w: BusWorld, svc: Service, event: Parameters<typeof machineStep>[1], cfg: BusWorldConfig, out: Eff[], bytes: Buffer | undefined): void {
  const before = svc.state;
  const { state, effects } = machineStep(before, event, cfg.machine);
  if (state.phase !== before.phase) out.push({ type: 'phase', conn: svc.conn, from: before.phase, to: state.phase });
  svc.state = state;
  for (const e of effects) {
    switch (e.type) {
      case 'send':
        out.push({ type: 'send', conn: svc.conn, frame: e.frame });
        break;
      case 'disconnect':
        disconnect(w, svc, e.reason, e.detail, out);
        break;
      case 'register':
        register(w, svc, e.data, cfg, out);
        break;
      case 'route':
        route(w, svc, e.msg, cfg, out, bytes);
        break;
      case 'reply':
        reply(w, svc, e.msg, out, bytes);
        break;
      case 'goodbye':
        unregister(w, svc, out);
        out.push({ type: 'close', conn: svc.conn, code: CloseCode.NORMAL, reason: 'goodbye' });
        break;
    }
  }
}

export function disconnect(w: BusWorld, svc: Service, reason: DisconnectReason, detail: string | undefined, out: Eff[]): void {
  svc.state = CLOSED;
  unregister(w, svc, out);
  out.push({ type: 'disconnect', conn: svc.conn, reason, detail });
}

function register(w: BusWorld, svc: Service, data: IdentifyData, cfg: BusWorldConfig, out: Eff[]): void {
  if (data.name !== undefined) {
    if (w.names.has(data.name) || w.byId.has(data.name) || w.claims.has(data.name)) {
      out.push({ type: 'why', conn: svc.conn, why: 'name in use' });
      disconnect(w, svc, DisconnectReason.NAME_TAKEN, `the name "${data.name}" is in use`, out);
      return;
    }
    // Cluster mode: free here, but it must be free cluster-wide too (world-names.ts).
    if (cfg.claimNames === true) return claimName(w, svc, data, out);
  }
  enlist(w, svc, data, cfg, out);
}

/** IDENTIFY succeeds: the service is in the maps, its groups, and told its id. */
export function enlist(w: BusWorld, svc: Service, data: IdentifyData, cfg: BusWorldConfig, out: Eff[]): void {
  w.identifying.delete(svc.conn);
  if (data.name !== undefined) {
    svc.name = data.name;
    w.names.set(data.name, svc);
  }
  svc.identified = true;
  w.byId.set(svc.conn, svc);
  const groups = new Set<string>(data.groups ?? []);
  if (data.group !== undefined) groups.add(data.group);
  // No Set for a service in no group (most of them): the readers take undefined as none.
  svc.groups = groups.size > 0 ? groups : undefined;
  out.push({ type: 'identified', conn: svc.conn, identity: svc.name ?? svc.conn });
  out.push({ type: 'enlist', conn: svc.conn, on: true });
  out.push({ type: 'cluster', to: null, msg: { t: 'up', svc: info(svc) } });
  for (const g of groups) {
    let members = w.groups.get(g);
    if (!members) w.groups.set(g, (members = new Set()));
    members.add(svc.conn);
    out.push({ type: 'join', group: g, conn: svc.conn });
  }
  out.push({ type: 'send', conn: svc.conn, frame: encode.identified(svc.conn, cfg.heartbeatInterval) });
  const at = w.now + cfg.heartbeatInterval;
  w.heartbeats.push(svc, at);
  arm(w, out, 'heartbeat', at);
}

export function resolve(w: BusWorld, identifier: string): Service | undefined {
  return w.byId.get(identifier) ?? w.names.get(identifier);
}

function route(w: BusWorld, svc: Service, msg: Extract<BusMessage, { op: 0 }>, cfg: BusWorldConfig, out: Eff[], bytes: Buffer | undefined): void {
  const { intent } = msg;
  if (cfg.limited) {
    const size = bytes?.length ?? Buffer.byteLength(msg.raw);
    // The buckets read the world's clock; made on the service's first EVENT (no closure per EVENT).
    const events = (svc.events ??= new TokenBucket(() => w.now, cfg.eventRate));
    const eventBytes = (svc.eventBytes ??= new TokenBucket(() => w.now, cfg.byteRate));
    const wait = Math.max(events.waitMs(1), eventBytes.waitMs(size));
    if (wait > 0) {
      out.push(RATE_LIMITED_COUNT);
      out.push({
        type: 'log',
        level: 'warn',
        msg: 'bus: service over its EVENT rate limit; EVENTs refused with RATE_LIMITED',
        data: { service: svc.conn, name: svc.name, suppressed: 0 },
        peer: svc.conn,
      });
      out.push({ type: 'send', conn: svc.conn, frame: encode.replyError(msg.id, ReplyError.RATE_LIMITED, { retry_after: wait }) });
      return;
    }
    events.take(1);
    eventBytes.take(size);
  }
  w.routed[intent.target]++;
  const asks = msg.expectReply !== undefined && msg.id !== undefined;
  // Who gets the frame, kept only when replies are expected (a Set filled per GLOBAL
  // event to 1,000 services was a visible cost in the bench's P2 profile).
  let recipients: Set<string> | undefined;
  if (intent.target === 'DIRECT') {
    const to = resolve(w, intent.identifier as string);
    if (!to) return noRoute(svc.conn, msg.id, intent.target, intent.identifier, out);
    if (asks) recipients = new Set<string>().add(to.conn);
    // A request to another instance goes with what that instance must know (askRemote).
    if (to.instance === undefined) out.push({ type: 'deliver', target: connTarget(to), frame: relayed(svc, msg.raw, bytes) });
    else if (!asks) out.push({ type: 'deliver', target: { to: 'requester', requester: { instance: to.instance, conn: to.conn } }, frame: relayed(svc, msg.raw, bytes) });
  } else {
    const except = intent.self ? undefined : svc.conn;
    if (intent.target === 'GROUP') {
      const group = intent.identifier as string;
      const members = w.groups.get(group);
      const n = members ? members.size - (except !== undefined && members.has(except) ? 1 : 0) : 0;
      if (!members || n === 0) return noRoute(svc.conn, msg.id, intent.target, intent.identifier, out);
      // A request to a group with members elsewhere reaches those through askRemote.
      const local = asks && w.remote.size > 0 ? { local: true } : {};
      out.push({ type: 'deliver', target: except === undefined ? { to: 'group', group, ...local } : { to: 'group', group, except, ...local }, frame: relayed(svc, msg.raw, bytes) });
      if (asks) {
        recipients = new Set(members);
        if (except !== undefined) recipients.delete(except);
      }
    } else if (w.byId.size - (except !== undefined && w.byId.has(except) ? 1 : 0) > 0) {
      const local = asks && w.remote.size > 0 ? { local: true } : {};
      out.push({ type: 'deliver', target: except === undefined ? { to: 'all', ...local } : { to: 'all', except, ...local }, frame: relayed(svc, msg.raw, bytes) });
      if (asks) {
        recipients = new Set(w.byId.keys());
        if (except !== undefined) recipients.delete(except);
      }
    } else if (asks) {
      recipients = new Set();
    }
  }
  if (!asks || msg.id === undefined || msg.expectReply === undefined || !recipients) return;
  const collect = intent.target !== 'DIRECT';
  const expected = !collect ? 1 : msg.expectReply === 'all' ? recipients.size : Math.min(msg.expectReply, recipients.size);
  // Pending requests are keyed by requester and id: the id is the requester's to choose,
  // so another service using the same id can neither replace nor answer this one. A
  // requester reusing its own id while the first is pending replaces the first.
  const key = `${svc.conn}/${msg.id}`;
  const old = w.pending.get(key);
  if (old) {
    w.pending.delete(key);
    unindex(w, old);
  }
  if (collect && expected === 0) {
    out.push({ type: 'send', conn: svc.conn, frame: encode.replyEnd(msg.id, 0, 0, []) });
    return;
  }
  const r: Request = {
    key,
    requester: svc.conn,
    id: msg.id,
    identifier: intent.identifier,
    want: msg.expectReply,
    recipients,
    answers: 0,
    replied: undefined,
    gone: undefined,
    expected,
    collect,
    startedAt: w.now,
    deadline: w.now + Math.max(0, cfg.requestTimeout),
    target: intent.target,
    origin: undefined,
  };
  track(w, r, out);
  if (w.remote.size > 0) askRemote(w, r, relayed(svc, msg.raw, bytes), out);
  w.routing = r;
}

function noRoute(conn: string, id: string | undefined, target: string, identifier: string | undefined, out: Eff[]): void {
  out.push(NO_ROUTE_COUNT);
  out.push({ type: 'send', conn, frame: encode.replyError(id, ReplyError.NO_ROUTE, { target, identifier: identifier ?? null }) });
}

/**
 * A REPLY answers a pending request that was delivered to its sender and that it has
 * not answered yet. When several requesters asked it the same id, a REPLY whose intent
 * is DIRECT to one of them (by id or name) answers that one; otherwise the oldest.
 */
function reply(w: BusWorld, svc: Service, msg: Extract<BusMessage, { op: 5 }>, out: Eff[], bytes: Buffer | undefined): void {
  const list = svc.asked?.get(msg.id);
  if (!list) {
    out.push(DROPPED_COUNT);
    out.push({ type: 'log', level: 'debug', msg: 'bus: REPLY that answers no request this service was asked; dropped', data: { service: svc.conn, id: msg.id } });
    return;
  }
  let r = list[0] as Request;
  if (list.length > 1 && msg.to !== undefined) {
    const named = resolve(w, msg.to);
    if (named) r = list.find((e) => e.requester === named.conn) ?? r;
  }
  answered(w, svc, r, relayed(svc, msg.raw, bytes), out);
}

function unregister(w: BusWorld, svc: Service, out: Eff[]): void {
  w.identifying.delete(svc.conn);
  // Its heartbeat entry is dropped when it reaches the front (BeatQueue).
  if (!svc.identified) return;
  svc.identified = false;
  if (svc.claimed === true && svc.name !== undefined) {
    svc.claimed = false;
    out.push({ type: 'release', conn: svc.conn, name: svc.name });
  }
  // Off the Broker: no more deliveries, and out of every group there too.
  out.push({ type: 'enlist', conn: svc.conn, on: false });
  out.push({ type: 'cluster', to: null, msg: { t: 'down', id: svc.conn } });
  forget(w, svc, out);
}

/** Removes an identified service (here, or a replica) from groups, names, requests. */
export function forget(w: BusWorld, svc: Service, out: Eff[]): void {
  for (const g of svc.groups ?? []) {
    const members = w.groups.get(g);
    if (members) {
      members.delete(svc.conn);
      if (members.size === 0) w.groups.delete(g);
    }
  }
  for (const r of w.pending.values()) {
    if (r.requester !== svc.conn) continue;
    w.pending.delete(r.key);
    if (w.routing === r) w.routing = undefined;
    unindex(w, r);
  }
  recipientGone(w, svc, out);
  w.byId.delete(svc.conn);
  if (svc.name !== undefined && w.names.get(svc.name) === svc) w.names.delete(svc.name);
}
