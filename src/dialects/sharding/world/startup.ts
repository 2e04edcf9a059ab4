/**
 * Start-up: restoring the stored state at load, the start-up plan (sequential or
 * parallel CONNECTs) and walking the line of CONTROLs waiting for their CONNECT.
 */
import { encodeMaster } from '../../../protocols/sharding/messages.js';
import { expand, formatRanges, toRanges, type Range } from '../../../protocols/sharding/ranges.js';
import { planStart } from '../assignment.js';
import { isObj, isRanges, type Tx } from './tx.js';
import { IDENTIFY_QUEUE_FEATURE, type ControlRec, type FleetEvent } from './types.js';
import { newControl } from './membership.js';

export function loaded(tx: Tx, e: Extract<FleetEvent, { type: 'loaded' }>): void {
  const { cfg, s } = tx;
  if (isObj(e.budget) && typeof e.budget.used === 'number') {
    const b = e.budget;
    const stored = Array.isArray(b.lastGrant) ? (b.lastGrant as unknown[]).map((v) => (typeof v === 'number' ? v : null)) : [];
    let lastGrant = stored;
    if (stored.length !== cfg.maxConcurrency) {
      // maxConcurrency changed: be conservative, treat every bucket as used at the latest grant.
      const latest = stored.reduce<number | null>((m, v) => (v !== null && (m === null || v > m) ? v : m), null);
      lastGrant = Array.from({ length: cfg.maxConcurrency }, () => latest);
    }
    s.queue = {
      lastGrant,
      budget: { windowStart: typeof b.windowStart === 'number' ? b.windowStart : null, used: Math.max(0, Math.floor(b.used as number)) },
      waiting: [],
    };
  }
  if (isObj(e.fleet) && e.fleet.halted === true) {
    s.phase = 'halted';
    s.haltReason = typeof e.fleet.reason === 'string' ? e.fleet.reason : 'halted';
    s.haltedAt = typeof e.fleet.at === 'number' ? e.fleet.at : tx.now;
    tx.log('warn', 'sharding: the fleet is halted (persisted); POST /api/v1/sharding/resume to start it', { reason: s.haltReason });
    return;
  }
  const a = e.assignment;
  if (isObj(a) && a.started === true && isObj(a.controls)) {
    if (a.shardCount !== cfg.shardCount) {
      tx.log('warn', 'sharding: the stored assignment is for another shardCount; starting afresh', { stored: a.shardCount, shardCount: cfg.shardCount });
    } else {
      s.phase = 'running';
      for (const [name, v] of Object.entries(a.controls)) {
        if (!isObj(v) || typeof v.sessionId !== 'string' || !isRanges(v.shards)) continue;
        const ids = expand(v.shards, cfg.shardCount).filter((id) => s.shards[id]?.owner === null);
        if (ids.length === 0) continue;
        const rec = newControl(tx, name, v.sessionId, null, 1, []);
        rec.started = true;
        rec.disconnectedAt = tx.now;
        for (const id of ids) tx.patch(id, { owner: name, work: 'connected' });
        tx.setTimer({ kind: 'window', control: name }, tx.now + cfg.reconnectWindow);
      }
      tx.log('info', 'sharding: restored the stored assignment; waiting for its CONTROLs to reconnect', {
        controls: [...s.controls.keys()],
        reconnectWindow: cfg.reconnectWindow,
      });
      return;
    }
  }
  s.phase = 'waiting';
  tx.setTimer({ kind: 'startup' }, Math.max(tx.now, s.bootAt + cfg.startupDelay));
}

export function startFleet(tx: Tx): void {
  const { s, cfg } = tx;
  tx.orphansMaybe = true;
  s.phase = 'starting';
  s.startupDue = false;
  tx.cancelTimer({ kind: 'startup' });
  const toPlace: number[] = [];
  s.shards.forEach((sh, id) => {
    if (sh.owner === null && sh.planned === null && sh.target === null) toPlace.push(id);
  });
  const newcomers = tx.live().filter((c) => !c.started && c.plan === null);
  const plan = planStart(toPlace, newcomers, cfg.redundancy);
  const now: ControlRec[] = [];
  for (const item of plan) {
    const rec = s.controls.get(item.name) as ControlRec;
    rec.plan = item.ids;
    rec.planRedundant = item.redundant;
    for (const id of item.ids) tx.patch(id, { planned: rec.name });
    if (cfg.startup === 'parallel' && rec.features.includes(IDENTIFY_QUEUE_FEATURE)) now.push(rec);
    else s.sequence.push(rec.name);
  }
  tx.log('info', 'sharding: start-up', {
    mode: cfg.startup,
    plan: plan.map((p) => ({ control: p.name, shards: formatRanges(toRanges(p.ids)), redundant: p.redundant })),
  });
  for (const rec of now) sendConnect(tx, rec);
  tx.dirty.add('assignment');
}

export function sendConnect(tx: Tx, rec: ControlRec): void {
  tx.orphansMaybe = true;
  const ids = rec.plan ?? [];
  const redundant = rec.planRedundant;
  rec.plan = null;
  for (const id of ids) tx.patch(id, { planned: null, owner: rec.name, work: 'assigned', target: null });
  rec.started = true;
  rec.redundant = redundant;
  rec.awaitingSince = tx.now;
  tx.setTimer({ kind: 'connect', control: rec.name }, tx.now + tx.cfg.connectTimeout);
  const ranges = toRanges(ids);
  tx.send(rec.conn as string, encodeMaster.connect({ shardRange: ranges.length === 1 ? (ranges[0] as Range) : [], shards: ranges, redundant }));
  tx.dirty.add('assignment');
}

export function advance(tx: Tx): void {
  const { s } = tx;
  while (s.current === null && s.sequence.length > 0) {
    const name = s.sequence.shift() as string;
    const rec = s.controls.get(name);
    if (!rec) continue;
    // Away at its turn: it keeps its plan and gets its CONNECT when it comes back; if it
    // does not come back within reconnectWindow, the planned shards become orphans.
    if (rec.conn === null) continue;
    sendConnect(tx, rec);
    s.current = name;
  }
  if (s.phase === 'starting' && s.current === null && s.sequence.length === 0) {
    s.phase = 'running';
    tx.log('info', 'sharding: start-up complete');
  }
}

/** The start-up delay has passed: start with the CONTROLs there are, or at the first IDENTIFY. */
export function startupDeadline(tx: Tx): void {
  const { s } = tx;
  if (s.phase !== 'waiting') return;
  if (tx.live().length > 0) startFleet(tx);
  else s.startupDue = true;
}
