import { encodeControl } from '../protocols/sharding/messages.js';
import { IdentifySlotError } from './sharding-options.js';

interface SlotWaiter {
  resolve: () => void;
  reject: (err: Error) => void;
  cleanup: () => void;
}

/**
 * A CONTROL's side of the identify queue: who waits for which shard's IDENTIFY_GRANT,
 * which shards have an IDENTIFY_REQUEST out, and withdrawing one (IDENTIFY_CANCEL) when
 * nobody waits for it any more, so it spends no identify window.
 */
export class IdentifySlots {
  readonly #waiters = new Map<number, SlotWaiter[]>();
  readonly #requested = new Set<number>();
  /** Sends a frame if connected; says whether it did. */
  readonly #send: (frame: string) => boolean;
  /** Requests go out only while identified; the waiting ones are sent again after IDENTIFIED. */
  readonly #identified: () => boolean;

  constructor(send: (frame: string) => boolean, identified: () => boolean) {
    this.#send = send;
    this.#identified = identified;
  }

  /** Waits for the grant of `shardId` (the caller has checked that it runs here). */
  wait(shardId: number, signal: AbortSignal | undefined, resolve: () => void, reject: (err: Error) => void): void {
    const onAbort = (): void => {
      this.#remove(shardId, w);
      this.#cancelIfUnwanted(shardId);
      reject(new IdentifySlotError('ABORTED', `identify slot for shard ${shardId} aborted`));
    };
    const w: SlotWaiter = { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) };
    signal?.addEventListener('abort', onAbort, { once: true });
    const list = this.#waiters.get(shardId);
    if (list) list.push(w);
    else this.#waiters.set(shardId, [w]);
    this.#request(shardId);
  }

  /** IDENTIFY_GRANT: the first waiter may identify; the next one asks again. */
  grant(shardId: number): void {
    this.#requested.delete(shardId);
    const list = this.#waiters.get(shardId);
    const w = list?.shift();
    if (list && list.length === 0) this.#waiters.delete(shardId);
    if (w) {
      w.cleanup();
      w.resolve();
    }
    if (this.#waiters.has(shardId)) this.#request(shardId);
  }

  /** After IDENTIFIED: asks again for every shard someone waits for. */
  requestWaiting(): void {
    for (const shardId of this.#waiters.keys()) this.#request(shardId);
  }

  /** The connection ended: the MASTER forgot our requests. */
  forgetRequests(): void {
    this.#requested.clear();
  }

  /** The shard stopped: its waiters are rejected, its request withdrawn. */
  stopped(shardId: number, reason: string): void {
    const list = this.#waiters.get(shardId);
    if (!list) return;
    this.#waiters.delete(shardId);
    for (const w of list) {
      w.cleanup();
      w.reject(new IdentifySlotError('STOPPED', `shard ${shardId} was stopped (${reason})`));
    }
    this.#cancelIfUnwanted(shardId);
  }

  rejectAll(err: Error): void {
    for (const list of this.#waiters.values()) {
      for (const w of list) {
        w.cleanup();
        w.reject(err);
      }
    }
    this.#waiters.clear();
  }

  #request(shardId: number): void {
    if (!this.#identified() || this.#requested.has(shardId)) return;
    if (this.#send(encodeControl.identifyRequest(shardId))) this.#requested.add(shardId);
  }

  #cancelIfUnwanted(shardId: number): void {
    if (this.#waiters.has(shardId) || !this.#requested.has(shardId)) return;
    this.#requested.delete(shardId);
    this.#send(encodeControl.identifyCancel(shardId));
  }

  #remove(shardId: number, w: SlotWaiter): void {
    const list = this.#waiters.get(shardId);
    if (!list) return;
    const i = list.indexOf(w);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#waiters.delete(shardId);
  }
}
