/**
 * An identify throttler for `@discordjs/ws` that waits for Muster's grants, so that
 * shards on every host share one identify queue (one per `max_concurrency` bucket per
 * 5 s, and the daily session-start budget).
 *
 * It implements `IIdentifyThrottler` structurally and imports nothing from
 * `@discordjs/ws` at run time:
 *
 * ```ts
 * const control = new ShardingControl({ ... });
 * const manager = new WebSocketManager({
 *   token: control.initialise!.token,
 *   shardCount: control.initialise!.shard_count,
 *   shardIds: shardIdsOf(control.running),
 *   buildIdentifyThrottler: () => new MusterIdentifyThrottler(control),
 *   ...
 * });
 * ```
 */
import { expand, type Range } from '../protocols/sharding/ranges.js';

/** What the throttler needs from a CONTROL: `ShardingControl` has it. */
export interface IdentifySlotSource {
  identifySlot(shardId: number, signal?: AbortSignal): Promise<void>;
}

export class MusterIdentifyThrottler {
  readonly #source: IdentifySlotSource;

  constructor(source: IdentifySlotSource) {
    this.#source = source;
  }

  /** Resolves once Muster grants this shard an identify slot; rejects if `signal` aborts. */
  waitForIdentify(shardId: number, signal: AbortSignal): Promise<void> {
    return this.#source.identifySlot(shardId, signal);
  }
}

/** The shard ids inside ranges, for `WebSocketManager`'s `shardIds` option. */
export function shardIdsOf(ranges: readonly Range[], shardCount = Number.MAX_SAFE_INTEGER): number[] {
  return expand(ranges, shardCount);
}
