/**
 * The identify queue: IDENTIFY_REQUESTs in, IDENTIFY_GRANTs out, by the bucket/window
 * rule and the daily session-start budget (identify-queue.ts).
 */
import { encodeMaster } from '../../../protocols/sharding/messages.js';
import { drain, enqueue } from '../identify-queue.js';
import { queueConfig, type Tx } from './tx.js';
import type { ControlRec } from './types.js';

export function request(tx: Tx, rec: ControlRec, shardId: number): void {
  const sh = tx.s.shards[shardId];
  if (!sh || (sh.owner !== rec.name && sh.target !== rec.name)) {
    tx.violation(rec.conn as string, `IDENTIFY_REQUEST for shard ${shardId}, which this CONTROL does not own`);
    return;
  }
  tx.s.queue = enqueue(tx.s.queue, { shard: shardId, control: rec.name });
}

export function drainQueue(tx: Tx): void {
  const { s } = tx;
  if (s.phase === 'halted' || s.queue.waiting.length === 0) {
    if (s.queue.waiting.length > 0) s.queue = { ...s.queue, waiting: [] };
    tx.cancelTimer({ kind: 'queue' });
    return;
  }
  const res = drain(s.queue, tx.now, queueConfig(tx.cfg), (r) => {
    const rec = s.controls.get(r.control);
    const sh = s.shards[r.shard];
    return rec !== undefined && rec.conn !== null && sh !== undefined && (sh.owner === r.control || sh.target === r.control);
  });
  s.queue = res.state;
  for (const g of res.grants) {
    const rec = s.controls.get(g.control) as ControlRec;
    tx.send(rec.conn as string, encodeMaster.grant(g.shard));
    tx.fx.push({ type: 'grant', shard: g.shard, control: g.control });
  }
  if (res.grants.length > 0) tx.dirty.add('budget');
  if (res.exhausted && !s.exhausted) {
    tx.log('error', 'sharding: the daily identify budget (sessionStartLimit) is exhausted; no more grants until it resets', {
      sessionStartLimit: tx.cfg.sessionStartLimit,
      waiting: res.state.waiting.length,
    });
  }
  s.exhausted = res.exhausted;
  if (res.nextAt === null) tx.cancelTimer({ kind: 'queue' });
  else tx.setTimer({ kind: 'queue' }, res.nextAt);
}
