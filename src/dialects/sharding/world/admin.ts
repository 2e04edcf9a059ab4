/**
 * Admin calls: halt, resume and COMMAND relay (rebalance is in placement.ts).
 */
import { CloseCodes, encodeMaster } from '../../../protocols/sharding/messages.js';
import { expand, formatRanges, outside, toRanges, type Range } from '../../../protocols/sharding/ranges.js';
import type { CommandBody } from '../../../protocols/sharding/admin.js';
import type { Tx } from './tx.js';
import type { AdminAction } from './types.js';
import { removeControl } from './liveness.js';
import { rebalance } from './placement.js';
import { httpError } from '../../../common/errors.js';

export function admin(tx: Tx, action: AdminAction): void {
  switch (action.kind) {
    case 'halt':
      halt(tx, 'halted by an operator');
      return tx.reply(200, { halted: true, reason: tx.s.haltReason });
    case 'resume':
      return resume(tx);
    case 'rebalance':
      return rebalance(tx, action.body);
    case 'command':
      return command(tx, action.name, action.body);
  }
}

export function halt(tx: Tx, reason: string): void {
  const { s } = tx;
  if (s.phase === 'halted') return;
  s.phase = 'halted';
  s.haltReason = reason;
  s.haltedAt = tx.now;
  tx.log('info', 'sharding: fleet halted', { reason });
  s.startupDue = false;
  tx.cancelTimer({ kind: 'startup' });
  for (const rec of [...s.controls.values()]) {
    if (rec.conn === null) continue; // kept (reserved) until its window passes; told on reconnect
    const conn = rec.conn;
    tx.shutdown(conn, `fleet halted: ${reason}`);
    const sock = s.sockets.get(conn);
    if (sock) sock.control = null;
    tx.closeSocket(conn, CloseCodes.HALTED, 'Fleet halted', `the fleet is halted (${reason}); nothing starts until an operator resumes it`);
    removeControl(tx, rec, tx.now);
  }
  for (const rec of s.controls.values()) {
    rec.plan = null;
    tx.cancelTimer({ kind: 'connect', control: rec.name });
    rec.awaitingSince = null;
  }
  s.shards.forEach((sh, id) => {
    if (sh.planned !== null || sh.target !== null || sh.lostAt !== null) tx.patch(id, { planned: null, target: null, lostAt: null });
  });
  s.sequence = [];
  s.current = null;
  s.queue = { ...s.queue, waiting: [] };
  tx.cancelTimer({ kind: 'queue' });
  tx.dirty.add('fleet');
  tx.dirty.add('assignment');
}

export function resume(tx: Tx): void {
  const { s, cfg } = tx;
  if (s.phase !== 'halted') return tx.reply(200, { halted: false, phase: s.phase });
  s.phase = 'waiting';
  s.haltReason = null;
  s.haltedAt = null;
  tx.setTimer({ kind: 'startup' }, tx.now + cfg.startupDelay);
  tx.dirty.add('fleet');
  tx.log('info', 'sharding: fleet resumed by an operator; start-up follows', { startupDelay: cfg.startupDelay });
  tx.reply(200, { halted: false, phase: s.phase });
}

export function command(tx: Tx, name: string, body: CommandBody): void {
  const { s, cfg } = tx;
  const rec = s.controls.get(name);
  if (!rec) return tx.answer(httpError('NOT_FOUND', `no CONTROL named "${name}"`));
  if (rec.conn === null) return tx.reply(409, { error: 'DISCONNECTED', message: `CONTROL "${name}" is disconnected` });
  let ids: number[];
  let relay: Record<string, unknown>;
  if (body.command === 'restart_shard') {
    const id = body.args.shard_id;
    if (id >= cfg.shardCount) {
      return tx.answer(httpError('BAD_REQUEST', `restart_shard needs args.shard_id, an integer in [0, ${cfg.shardCount})`));
    }
    ids = [id];
    relay = { shard_id: id };
  } else {
    // Either [first, last] ranges (the contract's shape) or a flat list of shard ids.
    const raw = body.args.shards;
    const ranges = raw.map((r): Range => (typeof r === 'number' ? [r, r] : r));
    if (outside(ranges, cfg.shardCount).length > 0) return tx.answer(httpError('BAD_REQUEST', `no such shards: ${formatRanges(outside(ranges, cfg.shardCount))}`));
    ids = expand(ranges, cfg.shardCount);
    // Relayed as sent (validated), so the CONTROL sees what the operator asked for.
    relay = { shards: raw };
  }
  // Relayed as asked: the CONTROL restarts only shards it runs.
  const foreign = ids.filter((id) => s.shards[id]?.owner !== name);
  if (foreign.length > 0) tx.log('info', 'sharding: COMMAND names shards the CONTROL does not own', { control: name, shards: formatRanges(toRanges(foreign)) });
  tx.send(rec.conn, encodeMaster.command({ command: body.command, args: relay }));
  tx.log('info', 'sharding: COMMAND relayed', { control: name, command: body.command });
  tx.reply(202, { sent: true, control: name, command: body.command, args: relay });
}
