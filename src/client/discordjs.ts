/**
 * An identify throttler for `@discordjs/ws` that waits for Muster's grants, so that
 * shards on every host share one identify queue (one per `max_concurrency` bucket per
 * `identifyWindow` (+ `identifyMargin`), and the daily session-start budget).
 *
 * It implements `IIdentifyThrottler` structurally and imports nothing from
 * `@discordjs/ws` at run time. Most users want `MusterShardManager`
 * (`./discordjs-manager.ts`), which runs the shards Muster assigns and uses this throttler.
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

/** What a throttler rejects with: `signal.reason`, or this when the signal has none. */
function abortError(signal: AbortSignal, shardId: number): unknown {
  if (signal.reason !== undefined) return signal.reason;
  const err = new Error(`identify wait for shard ${shardId} aborted`);
  err.name = 'AbortError';
  return err;
}

export class MusterIdentifyThrottler {
  readonly #source: IdentifySlotSource;
  readonly #waiting = new Map<number, number>();

  constructor(source: IdentifySlotSource) {
    this.#source = source;
  }

  /** Waits that have neither been granted nor aborted. */
  get waiting(): number {
    let n = 0;
    for (const c of this.#waiting.values()) n += c;
    return n;
  }

  /** Shards with a pending wait. */
  get waitingShards(): number[] {
    return [...this.#waiting.keys()].sort((a, b) => a - b);
  }

  /** Whether a wait for this shard is pending (neither granted nor aborted). */
  isWaiting(shardId: number): boolean {
    return this.#waiting.has(shardId);
  }

  /**
   * Resolves once Muster grants this shard an identify slot; rejects only when `signal`
   * aborts. That is `@discordjs/ws`'s contract: any other rejection makes the shard destroy
   * its connection and reconnect after 500 ms, and ask again, for ever. So when the CONTROL
   * ends the wait without a grant (the shard was stopped, fenced, halted, restarted, or the
   * CONTROL closed), the promise stays pending until discord.js aborts it, which it does when
   * the shard's socket closes (`shard.destroy()`), and it is never granted afterwards.
   */
  waitForIdentify(shardId: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal.aborted) return reject(abortError(signal, shardId));
      this.#waiting.set(shardId, (this.#waiting.get(shardId) ?? 0) + 1);
      let settled = false;
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        const n = (this.#waiting.get(shardId) ?? 1) - 1;
        if (n === 0) this.#waiting.delete(shardId);
        else this.#waiting.set(shardId, n);
        signal.removeEventListener('abort', onAbort);
        return true;
      };
      const onAbort = (): void => {
        if (settle()) reject(abortError(signal, shardId));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      // The source gets the signal too: an abort withdraws the request (IDENTIFY_CANCEL).
      this.#source.identifySlot(shardId, signal).then(
        () => {
          if (!signal.aborted && settle()) resolve();
        },
        () => {
          // Ended without a grant but not aborted: wait for discord.js's abort (see above).
        },
      );
    });
  }
}

/** The shard ids inside ranges, for `WebSocketManager`'s `shardIds` option. */
export function shardIdsOf(ranges: readonly Range[], shardCount = Number.MAX_SAFE_INTEGER): number[] {
  return expand(ranges, shardCount);
}
