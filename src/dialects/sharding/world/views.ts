/**
 * What is stored, and what the admin API shows: pure functions of the fleet state.
 */
import type { JsonValue } from '../../../store/types.js';
import { toRanges, type Range } from '../../../protocols/sharding/ranges.js';
import { budgetRemaining } from '../identify-queue.js';
import { queueConfig } from './tx.js';
import type { ControlRec, ControlState, FleetState, MachineConfig, PersistKey, ShardState } from './types.js';

export function persisted(s: FleetState, cfg: MachineConfig, key: PersistKey): JsonValue {
  switch (key) {
    case 'fleet':
      return { halted: s.phase === 'halted', reason: s.haltReason, at: s.haltedAt };
    case 'budget':
      return { windowStart: s.queue.budget.windowStart, used: s.queue.budget.used, lastGrant: [...s.queue.lastGrant] };
    case 'assignment': {
      const controls: Record<string, JsonValue> = {};
      const byOwner = new Map<string, number[]>();
      s.shards.forEach((sh, id) => {
        if (sh.owner !== null) byOwner.set(sh.owner, [...(byOwner.get(sh.owner) ?? []), id]);
      });
      for (const [name, ids] of byOwner) {
        const rec = s.controls.get(name);
        if (rec) controls[name] = { sessionId: rec.sessionId, shards: toRanges(ids) };
      }
      return { shardCount: cfg.shardCount, started: s.phase === 'starting' || s.phase === 'running', controls };
    }
  }
}

export function shardState(s: FleetState, id: number): ShardState {
  const sh = s.shards[id];
  if (!sh) return 'unassigned';
  if (sh.owner === null) return s.phase === 'halted' ? 'halted' : sh.planned !== null ? 'pending' : 'unassigned';
  if ((s.controls.get(sh.owner)?.conn ?? null) === null) return 'disconnected';
  return sh.work;
}

export function controlState(s: FleetState, rec: ControlRec): ControlState {
  if (rec.conn === null) return 'disconnected';
  if (!rec.started) return 'waiting';
  if (rec.awaitingSince !== null) return 'connecting';
  const busy = s.shards.some((sh) => sh.owner === rec.name || sh.target === rec.name);
  return busy ? 'ready' : 'standby';
}

export function shardsView(s: FleetState): Array<{ id: number; owner: string | null; state: ShardState }> {
  return s.shards.map((sh, id) => ({ id, owner: sh.owner, state: shardState(s, id) }));
}

export interface ControlView {
  name: string;
  sessionId: string;
  state: ControlState;
  shards: Range[];
  redundant: boolean;
  capacity: number;
  lastHeartbeatMs: number | null;
}

export function controlView(s: FleetState, rec: ControlRec): ControlView {
  const ids: number[] = [];
  s.shards.forEach((sh, id) => {
    if (sh.owner === rec.name) ids.push(id);
  });
  return {
    name: rec.name,
    sessionId: rec.sessionId,
    state: controlState(s, rec),
    shards: toRanges(ids),
    redundant: rec.redundant,
    capacity: rec.capacity,
    lastHeartbeatMs: rec.lastHeartbeat,
  };
}

export function fleetView(s: FleetState, cfg: MachineConfig, now: number): Record<string, unknown> {
  const remaining = budgetRemaining(s.queue, now, queueConfig(cfg));
  return {
    halted: s.phase === 'halted',
    shardCount: cfg.shardCount,
    maxConcurrency: cfg.maxConcurrency,
    budgetRemaining: remaining,
    controls: [...s.controls.values()].sort((a, b) => a.order - b.order).map((c) => controlView(s, c)),
    phase: s.phase,
    haltReason: s.haltReason,
    budgetExhausted: remaining === 0,
    identifyQueueDepth: s.queue.waiting.length,
  };
}
