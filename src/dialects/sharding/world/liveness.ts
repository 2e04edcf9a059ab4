/**
 * Liveness: sockets opening and closing, the IDENTIFY, heartbeat, connect and
 * reconnect-window deadlines, and losing a CONTROL (its shards become orphans that
 * placement.ts gives a new home).
 */
import { CloseCodes, encodeMaster } from '../../../protocols/sharding/messages.js';
import { formatRanges, toRanges } from '../../../protocols/sharding/ranges.js';
import { dropWhere } from '../identify-queue.js';
import type { Tx } from './tx.js';
import type { ControlRec } from './types.js';

export function open(tx: Tx, conn: string, sessionId: string): void {
  const { cfg } = tx;
  tx.s.sockets.set(conn, { id: conn, sessionId, control: null, openedAt: tx.now, closing: false });
  tx.send(
    conn,
    encodeMaster.initialise({
      token: cfg.botToken,
      heartbeat_interval: cfg.heartbeatInterval,
      shard_count: cfg.shardCount,
      max_concurrency: cfg.maxConcurrency,
      session_id: sessionId,
      heartbeat_grace: cfg.heartbeatGrace,
      reconnect_window: cfg.reconnectWindow,
      fence_margin: cfg.fenceMargin,
    }),
  );
  tx.setTimer({ kind: 'identify', conn }, tx.now + cfg.identifyTimeout);
}

export function closed(tx: Tx, conn: string): void {
  const sock = tx.s.sockets.get(conn);
  if (!sock) return;
  tx.s.sockets.delete(conn);
  tx.cancelTimer({ kind: 'identify', conn });
  if (sock.control === null) return;
  const rec = tx.s.controls.get(sock.control);
  if (rec && rec.conn === conn) disconnect(tx, rec);
}

export function disconnect(tx: Tx, rec: ControlRec): void {
  rec.conn = null;
  rec.disconnectedAt = tx.now;
  tx.cancelTimer({ kind: 'heartbeat', control: rec.name });
  tx.cancelTimer({ kind: 'connect', control: rec.name });
  tx.s.queue = dropWhere(tx.s.queue, (r) => r.control === rec.name);
  clearTargets(tx, rec.name);
  if (tx.s.current === rec.name) tx.s.current = null;
  tx.setTimer({ kind: 'window', control: rec.name }, tx.now + tx.cfg.reconnectWindow);
  tx.log('info', 'sharding: CONTROL disconnected; its shards are kept for reconnectWindow', { control: rec.name, reconnectWindow: tx.cfg.reconnectWindow });
}

/** Closes a live CONTROL with 4001 and offloads its shards at once. */
export function kill(tx: Tx, rec: ControlRec, reason: string, message: string, lostAt: number): void {
  if (rec.conn !== null) {
    const sock = tx.s.sockets.get(rec.conn);
    if (sock) sock.control = null;
    tx.closeSocket(rec.conn, CloseCodes.DEAD_CONNECTION, reason, message);
  }
  removeControl(tx, rec, lostAt);
}

/** Forgets a CONTROL; its shards become orphans (placed by settle()). */
export function removeControl(tx: Tx, rec: ControlRec, lostAt: number): void {
  const { s } = tx;
  tx.orphansMaybe = true;
  const name = rec.name;
  s.controls.delete(name);
  for (const kind of ['heartbeat', 'connect', 'window'] as const) tx.cancelTimer({ kind, control: name });
  s.sequence = s.sequence.filter((n) => n !== name);
  if (s.current === name) s.current = null;
  s.queue = dropWhere(s.queue, (r) => r.control === name);
  clearTargets(tx, name);
  s.shards.forEach((sh, id) => {
    if (sh.planned === name) tx.patch(id, { planned: null });
    if (sh.owner !== name) return;
    if (sh.target !== null && s.controls.get(sh.target)?.conn) {
      // A make-before-break was under way: the incoming owner simply keeps it.
      tx.patch(id, { owner: sh.target, target: null });
      return;
    }
    tx.patch(id, { owner: null, work: 'assigned', target: null, lastOwner: name, lostAt });
  });
  tx.dirty.add('assignment');
}

/** Aborts the make-before-breaks towards `name`: the old owners keep those shards. */
export function clearTargets(tx: Tx, name: string): void {
  tx.s.shards.forEach((sh, id) => {
    if (sh.target === name) tx.patch(id, { target: null });
  });
}

/** A socket that has not identified within identifyTimeout is closed. */
export function identifyDeadline(tx: Tx, conn: string): void {
  const { s, cfg } = tx;
  const sock = s.sockets.get(conn);
  if (sock && sock.control === null && !sock.closing) {
    tx.closeSocket(conn, CloseCodes.IDENTIFY_TIMEOUT, 'No IDENTIFY in time', `no valid IDENTIFY within ${cfg.identifyTimeout} ms`);
  }
}

/** A CONTROL without HEARTBEAT for heartbeatInterval + heartbeatGrace is dead: its shards are offloaded. */
export function heartbeatDeadline(tx: Tx, control: string): void {
  const { s, cfg, now } = tx;
  const rec = s.controls.get(control);
  if (!rec || rec.conn === null) return;
  const due = rec.hbBase + cfg.heartbeatInterval + cfg.heartbeatGrace;
  if (now < due) return tx.setTimer({ kind: 'heartbeat', control }, due);
  tx.log('warn', 'sharding: CONTROL missed its heartbeat deadline; offloading its shards', { control: rec.name });
  kill(tx, rec, 'Dead connection', `no HEARTBEAT for ${cfg.heartbeatInterval + cfg.heartbeatGrace} ms`, rec.hbBase);
}

/** A CONTROL that did not report CONNECTED within connectTimeout of its CONNECT or OFFLOAD is dead. */
export function connectDeadline(tx: Tx, control: string): void {
  const { s, cfg, now } = tx;
  const rec = s.controls.get(control);
  if (!rec || rec.conn === null || rec.awaitingSince === null) return;
  const due = rec.awaitingSince + cfg.connectTimeout;
  if (now < due) return tx.setTimer({ kind: 'connect', control }, due);
  tx.log('warn', 'sharding: CONTROL did not report CONNECTED within connectTimeout; treated as dead', { control: rec.name });
  tx.shutdown(rec.conn, 'not CONNECTED within connectTimeout');
  kill(tx, rec, 'Dead connection', `not CONNECTED within ${cfg.connectTimeout} ms`, now);
}

/** A disconnected CONTROL that did not come back within reconnectWindow is forgotten; its shards become orphans. */
export function windowDeadline(tx: Tx, control: string): void {
  const { s, cfg, now } = tx;
  const rec = s.controls.get(control);
  if (!rec || rec.conn !== null || rec.disconnectedAt === null) return;
  const due = rec.disconnectedAt + cfg.reconnectWindow;
  if (now < due) return tx.setTimer({ kind: 'window', control }, due);
  const shards = tx.owned(rec.name);
  tx.log(shards.length ? 'warn' : 'info', 'sharding: CONTROL did not come back within reconnectWindow', {
    control: rec.name,
    shards: formatRanges(toRanges(shards)),
  });
  removeControl(tx, rec, rec.disconnectedAt);
}
