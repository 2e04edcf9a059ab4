/**
 * One step's transaction: the draft state, the effects collected so far and the
 * helpers every concern uses (send, log, timers, closes, shard patches). Each concern
 * module (liveness, membership, startup, placement, queue, admin) is a set of pure
 * functions over a Tx; machine.ts runs one Tx per event.
 */
import { encodeMaster, PROTOCOL_VIOLATION } from '../../../protocols/sharding/messages.js';
import type { Range } from '../../../protocols/sharding/ranges.js';
import type { QueueConfig } from '../identify-queue.js';
import { timerId, type ControlRec, type Effect, type FleetEvent, type FleetState, type MachineConfig, type PersistKey, type ShardRec, type TimerKey } from './types.js';

export function queueConfig(cfg: MachineConfig): QueueConfig {
  return {
    maxConcurrency: cfg.maxConcurrency,
    identifyWindow: cfg.identifyWindow + (cfg.identifyMargin ?? 0),
    sessionStartLimit: cfg.sessionStartLimit,
    ...(cfg.budgetPeriod !== undefined ? { budgetPeriod: cfg.budgetPeriod } : {}),
  };
}

export const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
export const isRange = (v: unknown): v is Range =>
  Array.isArray(v) && v.length === 2 && v.every((n) => Number.isSafeInteger(n) && (n as number) >= 0) && (v[0] as number) <= (v[1] as number);
export const isRanges = (v: unknown): v is Range[] => Array.isArray(v) && v.every(isRange);

export class Tx {
  readonly fx: Effect[] = [];
  /** Stored records this step changed (persisted by settle). */
  readonly dirty = new Set<PersistKey>();
  /** Something happened that may leave a shard without owner, or give one a home. */
  orphansMaybe = false;
  /** The type of the event being handled. */
  event: FleetEvent['type'] | undefined;

  constructor(
    readonly s: FleetState,
    readonly cfg: MachineConfig,
    readonly now: number,
  ) {}

  // ---- effect helpers ----

  send(conn: string, frame: string): void {
    this.fx.push({ type: 'send', conn, frame });
  }

  /** A log line; with `peer` (a socket id) it is one a peer can cause at will, and the runtime rate-limits it per peer. */
  log(level: 'debug' | 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>, peer?: string): void {
    const line: Effect = data ? { type: 'log', level, msg, data } : { type: 'log', level, msg };
    this.fx.push(peer === undefined ? line : { ...line, peer });
  }

  reply(status: number, body: unknown): void {
    this.fx.push({ type: 'reply', status, body });
  }

  /** Replies with an answer made whole, e.g. a catalogue error (`httpError`). */
  answer(a: { readonly status: number; readonly body: unknown }): void {
    this.reply(a.status, a.body);
  }

  setTimer(key: TimerKey, at: number): void {
    const id = timerId(key);
    if (this.s.timers.get(id)?.at === at) return;
    this.s.timers.set(id, { key, at });
    this.fx.push({ type: 'timer', key, at });
  }

  cancelTimer(key: TimerKey): void {
    const id = timerId(key);
    if (!this.s.timers.has(id)) return;
    this.s.timers.delete(id);
    this.fx.push({ type: 'timer', key, at: null });
  }

  /** ERROR {code, message}, then a close with the same code. */
  closeSocket(conn: string, code: number, reason: string, message: string): void {
    const sock = this.s.sockets.get(conn);
    if (!sock || sock.closing) return;
    sock.closing = true;
    this.cancelTimer({ kind: 'identify', conn });
    this.send(conn, encodeMaster.error(code, message));
    this.fx.push({ type: 'close', conn, code, reason });
  }

  violation(conn: string, message: string): void {
    this.send(conn, encodeMaster.error(PROTOCOL_VIOLATION, message));
  }

  shutdown(conn: string, reason: string, ids?: Range[]): void {
    this.send(conn, encodeMaster.shutdown(ids === undefined ? { reason } : { reason, shards: ids }));
  }

  /** Replaces shard `id`'s record with a changed copy. */
  patch(id: number, p: Partial<ShardRec>): void {
    const sh = this.s.shards[id];
    if (sh) this.s.shards[id] = { ...sh, ...p };
  }

  // ---- queries ----

  owned(name: string): number[] {
    const out: number[] = [];
    this.s.shards.forEach((sh, id) => {
      if (sh.owner === name) out.push(id);
    });
    return out;
  }

  live(): ControlRec[] {
    return [...this.s.controls.values()].filter((c) => c.conn !== null).sort((a, b) => a.order - b.order);
  }
}
