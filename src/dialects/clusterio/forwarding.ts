/**
 * Sending to peers, the master's own requests and their answers, and control requests
 * forwarded to the slave hosting an instance with the slave's answer relayed back.
 */
import type { PendingEntry } from '../../core/pending.js';
import type { Session } from '../../core/session.js';
import { encodeFrame, numberNode, stringifyTree, type Envelope, type LObject } from '../../protocols/clusterio/codec.js';
import { assignedSlave, instanceId } from '../../protocols/clusterio/config.js';
import { kindOf, responseTypeOf, SEED_CONTROL_ACCEPTS, SEED_SLAVE_ACCEPTS } from '../../protocols/clusterio/messages.js';
import { MAX_EXPIRED_SEQS, type Hub, type Link, type Outstanding, type Peer } from './types.js';
import { findInstance, whenSaved } from './instances.js';
import { feed } from './links.js';

/** Sends a numbered frame to a peer. Returns its seq, or undefined when it was not sent. */
export function sendPeer(hub: Hub, peer: Peer, type: string, data: string): number | undefined {
  if (!peer.alive) return undefined;
  if (peer.mode === 'seed') {
    // Never send a seed (2020) client an unsolicited type it does not know: it would close the link.
    const accepts = peer.role === 'slave' ? SEED_SLAVE_ACCEPTS : SEED_CONTROL_ACCEPTS;
    if (kindOf(type) !== 'response' && !accepts.has(type)) {
      hub.ctx.logger.debug({ peer: peer.key, type }, 'clusterio: not sent to a seed client that does not accept it');
      return undefined;
    }
    const link = peer.link;
    if (!link) return undefined;
    const seq = link.seedSeq++;
    link.conn.send(encodeFrame(seq, type, data));
    return seq;
  }
  const s = peer.session as Session<Peer, Link>;
  const seq = s.seq + 1;
  const frame = encodeFrame(seq, type, data);
  s.push(frame, hub.sessions.maxBufferedBytes);
  // Detached: kept in the session's buffer and replayed on resume.
  peer.link?.conn.send(frame);
  return seq;
}

export function requestPeer(hub: Hub, peer: Peer, type: string, data: string, timeoutMs: number, answer: Outstanding['answer'], fail: Outstanding['fail']): void {
  const seq = sendPeer(hub, peer, type, data);
  if (seq === undefined) {
    fail(`Slave ${peer.slaveId} is not connected`);
    return;
  }
  hub.pending.add(`${peer.key}#${seq}`, timeoutMs, { peer, seq, requestType: type, answer, fail });
}

export function timedOut(e: PendingEntry<Outstanding>): void {
  const { peer, seq, requestType } = e.data;
  peer.expired.add(seq);
  if (peer.expired.size > MAX_EXPIRED_SEQS) peer.expired.delete(peer.expired.values().next().value as number);
  e.data.fail(`Slave ${peer.slaveId} did not answer ${requestType} in time`);
}

/** Answers a peer's request: `{seq, ...body}`. */
export function respond(hub: Hub, peer: Peer, req: Envelope, body: LObject = {}): void {
  if (!peer.alive) return;
  sendPeer(hub, peer, responseTypeOf(req.type), stringifyTree({ seq: numberNode(String(req.seq)), ...body }));
}

export function respondError(hub: Hub, peer: Peer, req: Envelope, error: string): void {
  if (!peer.alive) return;
  sendPeer(hub, peer, responseTypeOf(req.type), stringifyTree({ seq: numberNode(String(req.seq)), error }));
}

/** Relays a slave's answer to a control under the control's seq, the data otherwise unchanged. */
export function relay(hub: Hub, control: Peer, req: Envelope, answer: Envelope): void {
  if (!control.alive) return;
  const out: LObject = {};
  for (const [k, v] of Object.entries(answer.tree)) if (k !== 'seq') out[k] = v;
  out.seq = numberNode(String(req.seq));
  sendPeer(hub, control, responseTypeOf(req.type), stringifyTree(out));
}

export function forward(hub: Hub, peer: Peer, env: Envelope): void {
  const rec = findInstance(hub, peer, env);
  if (!rec) return;
  const id = instanceId(rec.config);
  const slaveId = assignedSlave(rec.config);
  if (slaveId === null) return respondError(hub, peer, env, `Instance ${id} is not assigned to a slave`);
  const slave = hub.slaves.get(slaveId);
  if (!slave) return respondError(hub, peer, env, `Slave ${slaveId} hosting instance ${id} is not connected`);
  hub.m.forwarded.inc({ type: env.type });
  requestPeer(hub, 
    slave,
    env.type,
    stringifyTree(env.tree),
    hub.cfg.requestTimeout,
    (answer) => {
      if (env.type === 'delete_instance_request' && answer.data.error === undefined) {
        const cur = hub.registry.instances.get(id);
        if (cur === rec) return whenSaved(hub, peer, env, hub.registry.deleteInstance(id), () => relay(hub, peer, env, answer));
      }
      relay(hub, peer, env, answer);
    },
    (reason) => respondError(hub, peer, env, reason),
  );
}

export function onResponse(hub: Hub, link: Link, peer: Peer, env: Envelope): void {
  const seq = env.data.seq as number;
  const key = `${peer.key}#${seq}`;
  const entry = hub.pending.get(key);
  if (!entry) {
    if (peer.expired.delete(seq)) {
      hub.ctx.logger.debug({ peer: peer.key, seq, type: env.type }, 'clusterio: late answer to a timed-out request ignored');
      return;
    }
    feed(hub, link, { type: 'violation', detail: `Received ${env.type} to unknown request seq ${seq}` });
    return;
  }
  const expected = responseTypeOf(entry.data.requestType);
  if (expected !== env.type) {
    feed(hub, link, { type: 'violation', detail: `Received ${env.type} to request seq ${seq}, which expects ${expected}` });
    return;
  }
  hub.pending.take(key);
  entry.data.answer(env);
}
