/**
 * Failover and rebalance: CONNECTED reports (including the hand-over of a
 * make-before-break), OFFLOADs, placing orphaned shards on live CONTROLs and the
 * operator's rebalance.
 */
import { encodeMaster } from '../../../protocols/sharding/messages.js';
import { expand, formatRanges, outside, toRanges, type Range } from '../../../protocols/sharding/ranges.js';
import { planFailover, planRebalance, type Move } from '../assignment.js';
import type { RebalanceBody } from '../../../protocols/sharding/admin.js';
import type { Tx } from './tx.js';
import type { ControlRec, ShardRec } from './types.js';
import { httpError } from '../../../common/errors.js';

export function connected(tx: Tx, rec: ControlRec, ranges: Range[]): void {
  const { s, cfg } = tx;
  const conn = rec.conn as string;
  const ids = expand(ranges, cfg.shardCount);
  const beyond = outside(ranges, cfg.shardCount);
  const given: number[] = [];
  const notGiven: number[] = [];
  for (const id of ids) {
    const sh = s.shards[id] as ShardRec;
    if (sh.owner === rec.name || sh.target === rec.name) given.push(id);
    else notGiven.push(id);
  }
  if (notGiven.length > 0 || beyond.length > 0) {
    const bad = [...toRanges(notGiven), ...beyond];
    tx.violation(conn, `CONNECTED lists shards that were not given to this CONTROL: ${formatRanges(bad)}`);
    tx.shutdown(conn, 'not assigned to this CONTROL', bad);
  }
  const handover = new Map<string, number[]>();
  let lost: number | null = null;
  for (const id of given) {
    const sh = s.shards[id] as ShardRec;
    if (sh.lostAt !== null) lost = lost === null ? sh.lostAt : Math.min(lost, sh.lostAt);
    if (sh.target === rec.name && sh.owner !== rec.name) {
      // The incoming side of a make-before-break is up: it becomes the owner.
      if (sh.owner !== null) handover.set(sh.owner, [...(handover.get(sh.owner) ?? []), id]);
      tx.dirty.add('assignment');
      tx.patch(id, { owner: rec.name, target: null, work: 'connected', lostAt: null });
    } else {
      tx.patch(id, { work: 'connected', lostAt: null });
    }
  }
  for (const [from, moved] of handover) {
    const old = s.controls.get(from);
    if (old?.conn) tx.shutdown(old.conn, 'rebalance', toRanges(moved));
    tx.log('info', 'sharding: make-before-break complete', { from, to: rec.name, shards: formatRanges(toRanges(moved)) });
  }
  if (lost !== null) tx.fx.push({ type: 'failover', seconds: Math.max(0, tx.now - lost) / 1000 });
  const wellFormed = notGiven.length === 0 && beyond.length === 0;
  if (rec.awaitingSince !== null && (given.length > 0 || wellFormed)) {
    rec.awaitingSince = null;
    tx.cancelTimer({ kind: 'connect', control: rec.name });
    if (s.current === rec.name) s.current = null;
  }
}

export function offload(tx: Tx, rec: ControlRec, ids: number[], reason: 'failover' | 'rebalance', from: string | null): void {
  for (const id of ids) tx.patch(id, { owner: rec.name, work: 'assigned', target: null, planned: null });
  rec.redundant = false;
  rec.started = true;
  rec.awaitingSince = tx.now;
  tx.setTimer({ kind: 'connect', control: rec.name }, tx.now + tx.cfg.connectTimeout);
  tx.send(rec.conn as string, encodeMaster.offload({ shards: toRanges(ids), reason, ...(from !== null ? { from } : {}) }));
  tx.log('info', `sharding: OFFLOAD (${reason})`, { to: rec.name, from, shards: formatRanges(toRanges(ids)) });
  tx.dirty.add('assignment');
}

/** Every shard without an owner (and not promised to anyone) goes to a live CONTROL. */
export function placeOrphans(tx: Tx): void {
  const { s } = tx;
  if (s.phase !== 'starting' && s.phase !== 'running') return;
  const groups = new Map<string | null, number[]>();
  s.shards.forEach((sh, id) => {
    if (sh.owner !== null || sh.target !== null || sh.planned !== null) return;
    const g = groups.get(sh.lastOwner);
    if (g) g.push(id);
    else groups.set(sh.lastOwner, [id]);
  });
  for (const [from, ids] of groups) {
    const busy = new Set<string>();
    for (const sh of s.shards) {
      if (sh.owner !== null) busy.add(sh.owner);
      if (sh.target !== null) busy.add(sh.target);
    }
    const candidates = tx.live()
      .filter((c) => c.started && c.plan === null)
      .map((c) => ({ name: c.name, capacity: c.capacity, standby: !busy.has(c.name) }));
    if (candidates.length === 0) return;
    for (const [name, pids] of planFailover(ids, candidates)) offload(tx, s.controls.get(name) as ControlRec, pids, 'failover', from);
  }
}

/** A shard may move when it has no owner, or its owner is connected and serving it (CONNECTED). */
export function movable(tx: Tx, id: number): boolean {
  const sh = tx.s.shards[id];
  if (!sh || sh.owner === null) return true;
  return (tx.s.controls.get(sh.owner)?.conn ?? null) !== null && sh.work === 'connected';
}

export function rebalance(tx: Tx, body: RebalanceBody | undefined): void {
  const { s, cfg } = tx;
  if (s.phase === 'halted') return tx.reply(409, { error: 'HALTED', message: 'the fleet is halted; resume it first' });
  if (s.phase !== 'running') return tx.reply(409, { error: 'NOT_RUNNING', message: `start-up is not complete (phase ${s.phase})` });
  if (s.shards.some((sh) => sh.target !== null)) return tx.reply(409, { error: 'REBALANCE_IN_PROGRESS', message: 'a make-before-break is still under way' });
  const live = tx.live().filter((c) => c.started && c.plan === null);
  let moves: Move[];
  // No body or {} asks for the automatic plan (the body was checked at the HTTP edge).
  if (body === undefined || !('to' in body)) {
    if (live.length === 0) return tx.reply(409, { error: 'NO_CONTROLS', message: 'no live CONTROL to rebalance onto' });
    moves = planRebalance(
      s.shards.map((sh) => sh.owner),
      live,
      cfg.redundancy,
    )
      .map((m) => ({ ...m, ids: m.ids.filter((id) => movable(tx, id)) }))
      .filter((m) => m.ids.length > 0);
  } else {
    const to = s.controls.get(body.to);
    if (!to) return tx.answer(httpError('NOT_FOUND', `no CONTROL named "${body.to}"`));
    if (to.conn === null || !to.started || to.plan !== null) return tx.reply(409, { error: 'NOT_READY', message: `CONTROL "${body.to}" is not connected and started` });
    const beyond = outside(body.shards, cfg.shardCount);
    if (beyond.length > 0) return tx.answer(httpError('BAD_REQUEST', `no such shards: ${formatRanges(beyond)}`));
    const ids = expand(body.shards, cfg.shardCount).filter((id) => s.shards[id]?.owner !== to.name);
    const stuck = ids.filter((id) => !movable(tx, id));
    if (stuck.length > 0) return tx.reply(409, { error: 'NOT_MOVABLE', message: `shards whose owner is disconnected or still starting them cannot move: ${formatRanges(toRanges(stuck))}` });
    const groups = new Map<string | null, number[]>();
    for (const id of ids) {
      const from = (s.shards[id] as ShardRec).owner;
      groups.set(from, [...(groups.get(from) ?? []), id]);
    }
    moves = [...groups].map(([from, gids]) => ({ from, to: to.name, ids: gids }));
  }
  for (const m of moves) {
    const to = s.controls.get(m.to) as ControlRec;
    if (m.from === null) {
      offload(tx, to, m.ids, 'rebalance', null);
      continue;
    }
    for (const id of m.ids) tx.patch(id, { target: to.name });
    to.redundant = false;
    to.awaitingSince = tx.now;
    tx.setTimer({ kind: 'connect', control: to.name }, tx.now + cfg.connectTimeout);
    tx.send(to.conn as string, encodeMaster.offload({ shards: toRanges(m.ids), reason: 'rebalance', from: m.from }));
    tx.log('info', 'sharding: make-before-break started', { from: m.from, to: to.name, shards: formatRanges(toRanges(m.ids)) });
  }
  tx.reply(moves.length > 0 ? 202 : 200, { moves: moves.map((m) => ({ from: m.from, to: m.to, shards: toRanges(m.ids) })) });
}
