import { encodeControl, type CommandPayload } from '../protocols/sharding/messages.js';
import { expand, toRanges, type Range } from '../protocols/sharding/ranges.js';
import type { ShardingControlOptions, StartContext } from './sharding-options.js';

/** What the shard bookkeeping needs from its CONTROL. */
export interface ShardsHost {
  start: ShardingControlOptions['start'];
  stop: ShardingControlOptions['stop'];
  send(frame: string): boolean;
  identified(): boolean;
  emit(event: string, ...args: unknown[]): void;
  error(err: unknown): void;
  /** A shard stopped: its identify-slot waiters end. */
  stopped(shardId: number, reason: string): void;
}

interface Batch {
  ids: Set<number>;
  ac: AbortController;
}

/**
 * The shards a CONTROL serves: starting them in batches (the `start` hook, CONNECTING and
 * CONNECTED), stopping them at once (the `stop` hook), and fencing (stop all, remember
 * which to restart if ACKs come back).
 */
export class Shards {
  readonly #host: ShardsHost;
  /** Shards being served or started. */
  readonly running = new Set<number>();
  /** Shards whose start has finished. */
  readonly ready = new Set<number>();
  /** Shards stopped by the ACK fence, restarted if ACKs resume on the same connection. */
  readonly fenced = new Set<number>();
  readonly #batches = new Set<Batch>();

  constructor(host: ShardsHost) {
    this.#host = host;
  }

  /** No start is in progress. */
  get idle(): boolean {
    return this.#batches.size === 0;
  }

  /** `connecting`: announce the start with CONNECTING (not for a COMMAND restart); CONNECTED always follows once it is up. */
  start(ids: number[], reason: StartContext['reason'], redundant: boolean, connecting = true): void {
    if (connecting) this.#host.send(encodeControl.connecting());
    const fresh = ids.filter((id) => !this.running.has(id));
    for (const id of fresh) this.running.add(id);
    const batch: Batch = { ids: new Set(fresh), ac: new AbortController() };
    this.#batches.add(batch);
    const finish = (): void => {
      this.#batches.delete(batch);
      if (batch.ac.signal.aborted) return;
      for (const id of batch.ids) if (this.running.has(id)) this.ready.add(id);
      if (fresh.length > 0) this.#host.emit('started', toRanges(batch.ids));
      // Report what this CONNECT/OFFLOAD (or restart) asked for and is now up, not older
      // shards: an older one may be moving away at this very moment. A restarted shard is
      // reported too: the MASTER may never have heard it CONNECTED (stopped before READY).
      const up = ids.filter((id) => this.ready.has(id));
      if (this.#host.identified() && (connecting || up.length > 0)) this.#host.send(encodeControl.connected(toRanges(up)));
    };
    if (fresh.length === 0) {
      queueMicrotask(finish);
      return;
    }
    Promise.resolve()
      .then(() => this.#host.start(toRanges(fresh), { reason, redundant, signal: batch.ac.signal }))
      .then(finish, (err: unknown) => {
        this.#batches.delete(batch);
        for (const id of batch.ids) this.running.delete(id);
        this.#host.error(err);
      });
  }

  stop(ids: number[], reason: string): void {
    for (const id of ids) this.fenced.delete(id);
    const stopping = ids.filter((id) => this.running.has(id));
    for (const id of stopping) {
      this.running.delete(id);
      this.ready.delete(id);
    }
    for (const b of this.#batches) {
      for (const id of stopping) b.ids.delete(id);
      if (b.ids.size === 0) b.ac.abort();
    }
    for (const id of stopping) this.#host.stopped(id, reason);
    if (stopping.length === 0) return;
    const ranges = toRanges(stopping);
    // Called synchronously: a fence must not wait for the event loop.
    try {
      const r = this.#host.stop(ranges, { reason });
      if (r instanceof Promise) r.catch((err: unknown) => this.#host.error(err));
    } catch (err) {
      this.#host.error(err);
    }
    this.#host.emit('stopped', ranges, reason);
  }

  fence(reason: string): void {
    if (this.running.size === 0) return;
    const keep = [...this.fenced];
    this.stop([...this.running], `fenced: ${reason}`);
    for (const id of keep) this.fenced.add(id);
    this.#host.emit('fenced', reason);
  }
}

/** The shards a default COMMAND restarts: restart_shard's shard_id, restart_cluster's shards (ranges, or a flat list of ids). */
export function restartTargets(d: CommandPayload, shardCount: number): number[] {
  if (d.command === 'restart_shard' && typeof d.args.shard_id === 'number') return [d.args.shard_id];
  if (d.command === 'restart_cluster' && Array.isArray(d.args.shards)) {
    const list = d.args.shards as unknown[];
    const ranges = list.map((x) => (typeof x === 'number' ? ([x, x] as Range) : (x as Range)));
    return expand(ranges, shardCount);
  }
  return [];
}
