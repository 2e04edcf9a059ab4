/**
 * Pending requests of the bus world: who was asked what, replies, the end of a request
 * (every expected reply, nobody left to answer, or its timeout). Part of the pure world
 * (world.ts routes; world-cluster.ts carries requests across instances).
 */
import { encode, ReplyError } from '../../protocols/bus/messages.js';
import { arm, connTarget, type BusWorld, type Eff, type Request, type Service } from './world-state.js';

/** Makes `r` pending, with its timeout, and indexes it in every recipient's `asked`. */
export function track(w: BusWorld, r: Request, out: Eff[]): void {
  w.pending.set(r.key, r);
  arm(w, out, 'requests', r.deadline);
  for (const rid of r.recipients) {
    const to = w.byId.get(rid);
    if (!to) continue;
    const asked = (to.asked ??= new Map());
    const list = asked.get(r.id);
    if (list) list.push(r);
    else asked.set(r.id, [r]);
  }
}

/** A receiver was cut while the request was being delivered: it was never asked. */
export function notDelivered(r: Request, svc: Service): void {
  r.recipients.delete(svc.conn);
  dropAsked(svc, r.id, r);
  if (r.collect) r.expected = r.want === 'all' ? r.recipients.size : Math.min(r.want, r.recipients.size);
}

/** Forgets a finished request in every recipient's `asked` index. */
export function unindex(w: BusWorld, r: Request): void {
  for (const rid of r.recipients) {
    if (r.replied?.has(rid) === true || r.gone?.has(rid) === true) continue;
    const to = w.byId.get(rid);
    if (to) dropAsked(to, r.id, r);
  }
}

/** `svc` answered `r` with `frame`: to the requester (here, or back to its instance). */
export function answered(w: BusWorld, svc: Service, r: Request, frame: Buffer, out: Eff[]): void {
  dropAsked(svc, r.id, r);
  r.answers++;
  if (r.collect) (r.replied ??= new Set()).add(svc.conn);
  if (r.origin !== undefined) out.push({ type: 'cluster', to: r.origin, msg: { t: 'reply', svc: svc.conn, requester: r.requester, id: r.id, frame } });
  else {
    const requester = w.byId.get(r.requester);
    out.push({ type: 'deliver', target: requester ? connTarget(requester) : { to: 'conn', conn: r.requester }, frame });
  }
  if (r.answers >= r.expected) finish(w, r, 'complete', out);
  else if (r.answers + (r.gone?.size ?? 0) >= r.recipients.size) finish(w, r, 'gone', out);
}

/** Ends a request before its deadline: every expected reply came, or nobody is left to answer. */
export function finish(w: BusWorld, r: Request, outcome: 'complete' | 'gone', out: Eff[]): void {
  w.pending.delete(r.key);
  if (w.routing === r) w.routing = undefined;
  unindex(w, r);
  // Another instance's request: its own instance answers the requester.
  if (r.origin !== undefined) return;
  out.push({ type: 'observe', outcome, seconds: (w.now - r.startedAt) / 1000 });
  if (r.collect) out.push({ type: 'send', conn: r.requester, frame: encode.replyEnd(r.id, r.answers, r.expected, missing(r)) });
  else if (outcome === 'gone') {
    out.push({ type: 'send', conn: r.requester, frame: encode.replyError(r.id, ReplyError.NO_ROUTE, { target: 'DIRECT', identifier: r.identifier ?? null }) });
  }
}

function missing(r: Request): string[] {
  if (r.answers >= r.expected) return [];
  return [...r.recipients].filter((id) => r.replied?.has(id) !== true);
}

export function expire(w: BusWorld, r: Request, out: Eff[]): void {
  unindex(w, r);
  if (r.origin !== undefined) return;
  out.push({ type: 'observe', outcome: 'timeout', seconds: (w.now - r.startedAt) / 1000 });
  if (r.collect) out.push({ type: 'send', conn: r.requester, frame: encode.replyEnd(r.id, r.answers, r.expected, missing(r)) });
  else out.push({ type: 'send', conn: r.requester, frame: encode.replyError(r.id, ReplyError.TIMEOUT) });
}

/**
 * A recipient left: a DIRECT request to it is answered NO_ROUTE at once; a collection
 * ends at once (REPLY_END) when nobody who could still answer is left.
 */
export function recipientGone(w: BusWorld, svc: Service, out: Eff[]): void {
  if (!svc.asked) return;
  for (const list of svc.asked.values()) {
    for (const r of list) {
      const gone = (r.gone ??= new Set());
      gone.add(svc.conn);
      if (r.origin !== undefined) out.push({ type: 'cluster', to: r.origin, msg: { t: 'gone', svc: svc.conn, requester: r.requester, id: r.id } });
      if (!r.collect || r.answers + gone.size >= r.recipients.size) finish(w, r, 'gone', out);
    }
  }
  svc.asked.clear();
}

/** Removes one request from a service's `asked` index. */
export function dropAsked(svc: Service, id: string, r: Request): void {
  const list = svc.asked?.get(id);
  if (!list) return;
  if (list.length === 1 && list[0] === r) {
    svc.asked?.delete(id);
    return;
  }
  const i = list.indexOf(r);
  if (i >= 0) list.splice(i, 1);
  if (list.length === 0) svc.asked?.delete(id);
}
