/**
 * The one harness shape every dialect's integration and conformance tests share: start a
 * real server with that dialect (port 0, manual clock, memory store), open peers it
 * remembers, and tear down checking that nothing leaked. The dialect modules beside this
 * one (`bus.ts`, `clusterio.ts`, `discodo.ts`, `gamelist.ts`, `sharding.ts`) give each
 * dialect its starter, its authenticated peer and its round-trip barrier; all of them
 * speak the wire only, so the conformance tests stay written from the contracts.
 */
import { expect } from 'vitest';
import type { ManualClock } from '../../../src/core/clock.js';
import type { Muster } from '../../../src/server.js';
import { RawPeer, until } from '../server.js';

export type Overrides = Record<string, unknown>;
export type PeerOptions = ConstructorParameters<typeof RawPeer>[1];

/** What a harness needs of a started server. */
export interface Served {
  readonly muster: Muster;
  readonly clock: ManualClock;
  stop(): Promise<void>;
}

export class Harness<S extends Served, A extends unknown[]> {
  /** Every peer opened or tracked since the last teardown; teardown closes them. */
  readonly peers: RawPeer[] = [];
  /** The scheduler's wakes right after start: what the server needs with no peer at all. */
  baselineWakes = 0;
  #srv: S | undefined;

  constructor(
    /** The dialect's WebSocket path, e.g. `/bus`. */
    readonly path: string,
    readonly boot: (...args: A) => Promise<S>,
  ) {}

  async start(...args: A): Promise<S> {
    const srv = await this.boot(...args);
    this.#srv = srv;
    this.baselineWakes = srv.muster.scheduler.size;
    return srv;
  }

  /** Stops the running server (no peer may be open) and starts one with other settings. */
  async restart(...args: A): Promise<S> {
    await this.srv.stop();
    this.#srv = undefined;
    return this.start(...args);
  }

  get started(): boolean {
    return this.#srv !== undefined;
  }

  get srv(): S {
    if (!this.#srv) throw new Error('no server: call start() first');
    return this.#srv;
  }

  /** The dialect's ws:// URL on the running server. */
  get url(): string {
    return `${this.srv.muster.url().replace(/^http/, 'ws')}${this.path}`;
  }

  /** Opens a raw peer on the dialect's path and remembers it for teardown. */
  async open(opts: PeerOptions = {}): Promise<RawPeer> {
    return this.track(await RawPeer.open(this.url, opts));
  }

  track(peer: RawPeer): RawPeer {
    this.peers.push(peer);
    return peer;
  }

  /** Hands the server over to the test (which stops it itself); teardown then only forgets the peers. */
  release(): S {
    const srv = this.srv;
    this.#srv = undefined;
    return srv;
  }

  /** No wake is left beyond what the idle server needs. */
  expectNoWakesLeft(): void {
    expect(this.srv.muster.scheduler.size).toBeLessThanOrEqual(this.baselineWakes);
  }

  /**
   * Closes every remembered peer, waits (on real time, bounded) until the server holds
   * no connection, runs the caller's leak checks, and stops the server.
   */
  async teardown(check?: (srv: S) => void | Promise<void>, timeoutMs?: number): Promise<void> {
    const srv = this.#srv;
    const peers = this.peers.splice(0);
    for (const p of peers) p.close();
    if (!srv) return;
    try {
      await until(() => srv.muster.transport.size === 0, timeoutMs);
      await check?.(srv);
    } finally {
      this.#srv = undefined;
      await srv.stop();
    }
  }
}

/**
 * Sends `probe` and reads frames until one `isAnswer` accepts: a round trip through the
 * dialect that proves every frame sent before it was handled. Returns the frames that came
 * before the answer (taken off the queue).
 */
export async function takeUntilAnswer(peer: RawPeer, probe: unknown, isAnswer: (raw: string) => boolean): Promise<string[]> {
  peer.send(probe);
  const before: string[] = [];
  for (;;) {
    const raw = await peer.nextRaw();
    if (isAnswer(raw)) return before;
    before.push(raw);
  }
}

/** Like `takeUntilAnswer`, but the frames before the answer stay queued, in order, for the test. */
export async function roundTripKeeping(peer: RawPeer, probe: unknown, isAnswer: (raw: string) => boolean): Promise<void> {
  const before = await takeUntilAnswer(peer, probe, isAnswer);
  peer.frames.unshift(...before);
}

/** A config overrides tree that enables one dialect with `fields` on top of `top`. */
export function withDialect(name: string, fields: Overrides, top: Overrides = {}): Overrides {
  const { dialects, ...rest } = top as { dialects?: Overrides };
  return { ...rest, dialects: { ...(dialects ?? {}), [name]: { ...((dialects?.[name] as Overrides | undefined) ?? {}), ...fields } } };
}
