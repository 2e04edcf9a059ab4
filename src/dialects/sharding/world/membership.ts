/**
 * Membership: IDENTIFY of a new CONTROL or re-attach of a known one (session_id or
 * matching shard claims), adoption of claimed shards nobody owns, and a late joiner's
 * place in the start-up line.
 */
import { CloseCodes, encodeMaster, type IdentifyPayload } from '../../../protocols/sharding/messages.js';
import { expand, formatRanges, outside, toRanges, type Range } from '../../../protocols/sharding/ranges.js';
import { dropWhere } from '../identify-queue.js';
import type { Tx } from './tx.js';
import { IDENTIFY_QUEUE_FEATURE, type ControlRec, type ShardRec, type SocketRec } from './types.js';
import { removeControl } from './liveness.js';
import { sendConnect } from './startup.js';

export function identify(tx: Tx, sock: SocketRec, d: IdentifyPayload): void {
  const { s } = tx;
  tx.cancelTimer({ kind: 'identify', conn: sock.id });
  const name = d.name;
  let existing = s.controls.get(name);

  if (s.phase === 'halted') {
    if (existing && existing.conn === null) removeControl(tx, existing, existing.disconnectedAt ?? tx.now);
    tx.shutdown(sock.id, `fleet halted: ${s.haltReason ?? ''}`.trim());
    tx.closeSocket(sock.id, CloseCodes.HALTED, 'Fleet halted', `the fleet is halted (${s.haltReason ?? 'halted'}); nothing starts until an operator resumes it`);
    return;
  }

  const sessionMatches = existing !== undefined && d.session_id !== undefined && d.session_id === existing.sessionId;
  if (existing && existing.conn !== null) {
    if (!sessionMatches) {
      tx.closeSocket(sock.id, CloseCodes.NAME_IN_USE, 'Name in use', `a CONTROL named "${name}" is already connected`);
      return;
    }
    const old = s.sockets.get(existing.conn);
    if (old) old.control = null;
    tx.closeSocket(existing.conn, CloseCodes.SUPERSEDED, 'Superseded', 'superseded by a newer connection of the same CONTROL');
    existing.conn = null;
    tx.cancelTimer({ kind: 'heartbeat', control: name });
    tx.s.queue = dropWhere(tx.s.queue, (r) => r.control === name);
  }

  const claims = d.shards;
  const resumed = existing !== undefined && (sessionMatches || claimsMatch(tx, existing, claims));
  if (existing && !resumed) {
    tx.log('info', 'sharding: CONTROL came back as new (no session_id, and its shards do not match); its old shards are offloaded', { control: name });
    removeControl(tx, existing, existing.disconnectedAt ?? tx.now);
    existing = undefined;
  }
  sock.control = name;
  if (existing) reattach(tx, existing, sock, d, claims);
  else fresh(tx, sock, d, claims);
  tx.dirty.add('assignment');
}

export function claimsMatch(tx: Tx, rec: ControlRec, claims: Range[] | undefined): boolean {
  if (claims === undefined || claims.length === 0) return false;
  if (outside(claims, tx.cfg.shardCount).length > 0) return false;
  const ids = expand(claims, tx.cfg.shardCount);
  return ids.length > 0 && ids.every((id) => tx.s.shards[id]?.owner === rec.name);
}

/** Claims of shards that nobody owns are adopted; the others get SHUTDOWN. */
export function claim(tx: Tx, name: string, ids: number[], beyond: Range[]): { adopted: number[]; refused: Range[] } {
  const adopted: number[] = [];
  const refused: number[] = [];
  for (const id of ids) {
    const sh = tx.s.shards[id] as ShardRec;
    if (sh.owner === name) continue;
    if (sh.owner === null && sh.target === null && sh.planned === null) {
      tx.patch(id, { owner: name, work: 'connected', lastOwner: null, lostAt: null });
      adopted.push(id);
    } else {
      refused.push(id);
    }
  }
  return { adopted, refused: [...toRanges(refused), ...beyond] };
}

export function reattach(tx: Tx, rec: ControlRec, sock: SocketRec, d: IdentifyPayload, claims: Range[] | undefined): void {
  const { cfg, now } = tx;
  tx.orphansMaybe = true;
  rec.conn = sock.id;
  rec.sessionId = sock.sessionId;
  rec.disconnectedAt = null;
  if (d.capacity !== undefined) rec.capacity = d.capacity;
  if (d.features !== undefined) rec.features = [...d.features];
  rec.identifiedAt = now;
  rec.hbBase = now;
  tx.cancelTimer({ kind: 'window', control: rec.name });
  tx.setTimer({ kind: 'heartbeat', control: rec.name }, now + cfg.heartbeatInterval + cfg.heartbeatGrace);

  const owned = tx.owned(rec.name);
  let kept = owned;
  let missing: number[] = [];
  let adopted: number[] = [];
  let refused: Range[] = [];
  if (claims !== undefined) {
    const claimed = new Set(expand(claims, cfg.shardCount));
    kept = owned.filter((id) => claimed.has(id));
    missing = owned.filter((id) => !claimed.has(id));
    ({ adopted, refused } = claim(tx, rec.name, [...claimed], outside(claims, cfg.shardCount)));
  }
  if (adopted.length > 0 || kept.length > 0) rec.started = true;
  tx.send(sock.id, encodeMaster.identified({ resumed: true, shards: toRanges([...kept, ...adopted]), redundant: rec.redundant }));
  if (refused.length > 0) tx.shutdown(sock.id, 'owned by another CONTROL', refused);
  if (missing.length > 0) {
    for (const id of missing) tx.patch(id, { work: 'assigned' });
    tx.send(sock.id, encodeMaster.offload({ shards: toRanges(missing), reason: 'failover', from: rec.name }));
    rec.awaitingSince = now;
  }
  if (rec.awaitingSince !== null) {
    rec.awaitingSince = now;
    tx.setTimer({ kind: 'connect', control: rec.name }, now + cfg.connectTimeout);
  }
  tx.log('info', 'sharding: CONTROL re-attached', { control: rec.name, shards: formatRanges(toRanges([...kept, ...adopted])) });
  const inLine = tx.s.sequence.includes(rec.name) || tx.s.current === rec.name;
  if (!rec.started && !inLine && (tx.s.phase === 'starting' || tx.s.phase === 'running')) {
    if (rec.plan !== null) tx.s.sequence.push(rec.name);
    else joinLate(tx, rec);
  }
}

export function fresh(tx: Tx, sock: SocketRec, d: IdentifyPayload, claims: Range[] | undefined): void {
  const { cfg, now } = tx;
  tx.orphansMaybe = true;
  const rec = newControl(tx, d.name, sock.sessionId, sock.id, d.capacity ?? 1, d.features ?? []);
  tx.setTimer({ kind: 'heartbeat', control: rec.name }, now + cfg.heartbeatInterval + cfg.heartbeatGrace);
  const { adopted, refused } = claims === undefined ? { adopted: [], refused: [] } : claim(tx, rec.name, expand(claims, cfg.shardCount), outside(claims, cfg.shardCount));
  if (adopted.length > 0) rec.started = true;
  tx.send(sock.id, encodeMaster.identified({ resumed: false, shards: toRanges(adopted), redundant: false }));
  if (refused.length > 0) tx.shutdown(sock.id, 'owned by another CONTROL', refused);
  tx.log('info', 'sharding: CONTROL identified', { control: rec.name, capacity: rec.capacity, adopted: formatRanges(toRanges(adopted)) });
  if (!rec.started && (tx.s.phase === 'starting' || tx.s.phase === 'running')) joinLate(tx, rec);
}

export function newControl(tx: Tx, name: string, sessionId: string, conn: string | null, capacity: number, features: readonly string[]): ControlRec {
  const rec: ControlRec = {
    name,
    sessionId,
    conn,
    capacity,
    features: [...features],
    order: tx.s.orderSeq++,
    started: false,
    redundant: false,
    plan: null,
    planRedundant: false,
    awaitingSince: null,
    identifiedAt: tx.now,
    hbBase: tx.now,
    lastHeartbeat: null,
    disconnectedAt: null,
    info: null,
    infoAt: null,
  };
  tx.s.controls.set(name, rec);
  return rec;
}

/** A CONTROL that arrives after start-up: a standby CONNECT, in line or at once. */
export function joinLate(tx: Tx, rec: ControlRec): void {
  rec.plan = [];
  rec.planRedundant = true;
  if (tx.cfg.startup === 'parallel' && rec.features.includes(IDENTIFY_QUEUE_FEATURE)) sendConnect(tx, rec);
  else tx.s.sequence.push(rec.name);
}
