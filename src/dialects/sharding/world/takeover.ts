/**
 * Takeover (cluster mode): a new leader has loaded the stored assignment (every stored
 * CONTROL disconnected, its shards kept for reconnectWindow), and the edges re-announce
 * the sockets they hold. Each announced CONTROL is re-attached without a word on the
 * wire unless something must change, and its claims are reconciled with the store:
 *
 * - shards it serves and the store gives it: kept;
 * - shards it serves that nobody owns: adopted;
 * - shards it serves that the store gives another CONTROL: SHUTDOWN (the store is never
 *   behind what a CONTROL was told, since every write precedes the frames announcing it);
 * - shards the store gives it that it does not serve: OFFLOAD to it again.
 *
 * So no shard gets a second owner, and a shard whose owner is not announced and does
 * not come back within reconnectWindow is placed elsewhere, as after a restart.
 */
import { CloseCodes } from '../../../protocols/sharding/messages.js';
import { expand, formatRanges, outside, toRanges, type Range } from '../../../protocols/sharding/ranges.js';
import { encodeMaster } from '../../../protocols/sharding/messages.js';
import type { Tx } from './tx.js';
import type { AdoptedControl, ControlRec, FleetEvent } from './types.js';
import { claim, joinLate, newControl } from './membership.js';

export function adopt(tx: Tx, e: Extract<FleetEvent, { type: 'adopt' }>): void {
  const { s, cfg, now } = tx;
  if (s.sockets.has(e.conn)) return;
  const sock = { id: e.conn, sessionId: e.sessionId, control: null as string | null, openedAt: now, closing: false };
  s.sockets.set(e.conn, sock);
  const c = e.control;
  if (c === undefined) {
    // Initialised, not yet identified: it gets a fresh identifyTimeout from here.
    tx.setTimer({ kind: 'identify', conn: e.conn }, now + cfg.identifyTimeout);
    return;
  }
  if (s.phase === 'halted') {
    tx.shutdown(e.conn, `fleet halted: ${s.haltReason ?? ''}`.trim());
    tx.closeSocket(e.conn, CloseCodes.HALTED, 'Fleet halted', `the fleet is halted (${s.haltReason ?? 'halted'}); nothing starts until an operator resumes it`);
    return;
  }
  let rec = s.controls.get(c.name);
  if (rec && rec.conn !== null) {
    // Two edges hold a socket of the same CONTROL: the one announced first stays.
    tx.closeSocket(e.conn, CloseCodes.NAME_IN_USE, 'Name in use', `a CONTROL named "${c.name}" is already connected`);
    return;
  }
  sock.control = c.name;
  tx.orphansMaybe = true;
  if (rec) {
    rec.conn = e.conn;
    rec.sessionId = e.sessionId;
    rec.disconnectedAt = null;
    if (c.capacity !== undefined) rec.capacity = c.capacity;
    if (c.features !== undefined) rec.features = [...c.features];
    tx.cancelTimer({ kind: 'window', control: rec.name });
  } else {
    rec = newControl(tx, c.name, e.sessionId, e.conn, c.capacity ?? 1, c.features ?? []);
  }
  rec.identifiedAt = now;
  rec.hbBase = now;
  tx.setTimer({ kind: 'heartbeat', control: rec.name }, now + cfg.heartbeatInterval + cfg.heartbeatGrace);
  reconcile(tx, rec, c);
  tx.dirty.add('assignment');
}

function reconcile(tx: Tx, rec: ControlRec, c: AdoptedControl): void {
  const { cfg, now } = tx;
  const conn = rec.conn as string;
  const claims = c.shards as Range[];
  const claimed = new Set(expand(claims, cfg.shardCount));
  const owned = tx.owned(rec.name);
  const kept = owned.filter((id) => claimed.has(id));
  const missing = owned.filter((id) => !claimed.has(id));
  const { adopted, refused } = claim(tx, rec.name, [...claimed], outside(claims, cfg.shardCount));
  rec.started = rec.started || c.started || kept.length > 0 || adopted.length > 0;
  rec.redundant = c.redundant && kept.length === 0 && adopted.length === 0 && missing.length === 0;
  if (refused.length > 0) tx.shutdown(conn, 'owned by another CONTROL', refused);
  if (missing.length > 0) {
    for (const id of missing) tx.patch(id, { work: 'assigned' });
    tx.send(conn, encodeMaster.offload({ shards: toRanges(missing), reason: 'failover', from: rec.name }));
    rec.awaitingSince = now;
    tx.setTimer({ kind: 'connect', control: rec.name }, now + cfg.connectTimeout);
  }
  tx.log('info', 'sharding: CONTROL taken over from the previous leader', {
    control: rec.name,
    shards: formatRanges(toRanges([...kept, ...adopted])),
    ...(refused.length > 0 ? { refused: formatRanges(refused) } : {}),
    ...(missing.length > 0 ? { offloaded: formatRanges(toRanges(missing)) } : {}),
  });
  if (!rec.started && (tx.s.phase === 'starting' || tx.s.phase === 'running')) joinLate(tx, rec);
}
