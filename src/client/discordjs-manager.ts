/**
 * `MusterShardManager`: runs the Discord shards Muster assigns to this CONTROL with the real
 * `@discordjs/ws`, one `WebSocketShard` per shard, identifying through Muster's fleet-wide
 * queue. It owns a `ShardingControl` and turns its hooks into shard starts and stops:
 *
 * - CONNECT, OFFLOAD, a COMMAND restart, or ACKs resuming after a fence start shards; the
 *   CONTROL reports CONNECTED once each of them has had its own READY (or RESUMED), or has
 *   been stopped meanwhile. Nothing waits on `WebSocketManager.connect()`, which never
 *   settles when a shard is destroyed before READY.
 * - SHUTDOWN, a fence, a halt, a restart or `close()` destroy exactly those shards. A shard
 *   stopped while it waits for its grant is never granted: its wait stays pending until its
 *   socket closes (`MusterIdentifyThrottler`), so discord.js does not reconnect it.
 * - A stopped shard that discord.js reconnects anyway (it was stopped during discord.js's own
 *   500 ms reconnect pause) is destroyed again at its HELLO, before it can identify.
 * - A Discord close code that must not be retried (4004, 4010–4014) is reported with FATAL.
 *
 * `@discordjs/ws` is loaded at the first start (`import('@discordjs/ws')`), or passed in as
 * `discord`: nothing here imports it at module load, so `muster/client` works without it.
 */
import { EventEmitter } from 'node:events';
import { FATAL_DISCORD_CODES, type IdentifiedPayload, type InfoPayload } from '../protocols/sharding/messages.js';
import type { Range } from '../protocols/sharding/ranges.js';
import { MusterIdentifyThrottler, shardIdsOf } from './discordjs.js';
import { ShardingControl, type ShardingControlOptions, type StartContext, type StopContext } from './sharding.js';

/** The parts of a `WebSocketShard` used here. */
export interface DiscordShardLike {
  readonly id: number;
  readonly status: number;
  connect(): Promise<void>;
  destroy(options?: { code?: number; reason?: string }): Promise<void>;
  send(payload: unknown): Promise<void>;
  on(event: string, listener: (...args: never[]) => void): unknown;
}

/** The parts of a `WebSocketManager` used here. */
export interface DiscordManagerLike {
  fetchGatewayInformation(force?: boolean): Promise<unknown>;
}

/** The parts of the `@discordjs/ws` module used here (pass `await import('@discordjs/ws')`). */
export interface DiscordWsModule {
  WebSocketManager: new (options: never) => unknown;
  WebSocketShard: new (strategy: never, id: number) => unknown;
  SimpleContextFetchingStrategy: new (manager: never, options: never) => unknown;
  managerToFetchingStrategyOptions(manager: never): Promise<unknown>;
}

/**
 * `WebSocketManager` options without the ones Muster decides (`token`, `shardCount`,
 * `shardIds`, `buildIdentifyThrottler`, `buildStrategy`): at least `intents` and `rest`.
 */
export interface DiscordManagerOptions {
  intents: number;
  /** A `REST` from `@discordjs/rest` (only `GET /gateway/bot` is used). */
  rest: unknown;
  [option: string]: unknown;
}

export interface MusterShardManagerOptions {
  /** The CONTROL: url, authorization, name, capacity, … (`start` and `stop` are this manager's). */
  control: Omit<ShardingControlOptions, 'start' | 'stop'>;
  manager: DiscordManagerOptions;
  /** The `@discordjs/ws` module; loaded with `import('@discordjs/ws')` when absent. */
  discord?: DiscordWsModule;
  /** Report non-retryable Discord close codes with FATAL (halts the fleet). Default true. */
  reportFatal?: boolean;
}

/** The events a `WebSocketShard` emits; re-emitted here as `(…args, shardId)`, like `WebSocketManager`. */
export const SHARD_EVENTS = ['closed', 'debug', 'dispatch', 'error', 'heartbeat', 'hello', 'ready', 'resumed', 'socketError'] as const;

interface Entry {
  readonly id: number;
  readonly shard: DiscordShardLike;
  ready: boolean;
  retired: boolean;
  latency: number | undefined;
  /** Settled at READY, RESUMED, or stop. */
  readonly done: Promise<void>;
  settle: () => void;
}

/**
 * Events: every shard event as `(…args, shardId)` (`ready`, `dispatch`, `closed`, …; `error`
 * only when someone listens), `shardReady` (shardId), `shardStopped` (shardId, reason,
 * waitingForIdentify), `shardDestroyed` (shardId) once its `destroy()` settled, and `error`.
 * The CONTROL's own events are on `control`.
 */
export class MusterShardManager extends EventEmitter {
  readonly control: ShardingControl;
  readonly #opts: MusterShardManagerOptions;
  #discord: DiscordWsModule | undefined;
  #manager: DiscordManagerLike | undefined;
  #throttler: MusterIdentifyThrottler | undefined;
  readonly #shards = new Map<number, Entry>();
  readonly #destroying = new Set<Promise<void>>();
  /** The latest `destroy()` in flight per shard id: a restart waits for it, so two sessions never overlap. */
  readonly #destroyingById = new Map<number, Promise<void>>();
  readonly stats = { started: 0, stopped: 0, stoppedWhileWaiting: 0, destroyed: 0, redestroyed: 0 };

  constructor(opts: MusterShardManagerOptions) {
    super();
    this.#opts = opts;
    this.control = new ShardingControl({
      ...opts.control,
      start: (ranges, ctx) => this.#start(ranges, ctx),
      stop: (ranges, ctx) => this.#stop(ranges, ctx),
      info: opts.control.info ?? (() => this.#info()),
    });
  }

  /** The `WebSocketManager` (once the first shard has started): `send`, `fetchStatus`, events. */
  get manager(): unknown {
    return this.#manager;
  }

  /** Shards running here (started, not stopped). */
  get shardIds(): number[] {
    return [...this.#shards.keys()].sort((a, b) => a - b);
  }

  /** Shards that have had their READY (or RESUMED). */
  get readyShardIds(): number[] {
    return [...this.#shards.values()].filter((e) => e.ready).map((e) => e.id).sort((a, b) => a - b);
  }

  /** Shards whose identify wait is pending (neither granted nor aborted by discord.js). */
  get waitingForIdentify(): number[] {
    return this.#throttler?.waitingShards ?? [];
  }

  /** `destroy()` calls still in flight. */
  get destroying(): number {
    return this.#destroying.size;
  }

  /** Connects the CONTROL to Muster; resolves with its first IDENTIFIED. Shards follow Muster's CONNECT. */
  connect(): Promise<IdentifiedPayload> {
    return this.control.connect();
  }

  /** Sends a gateway payload on a running shard. */
  async send(shardId: number, payload: unknown): Promise<void> {
    const e = this.#shards.get(shardId);
    if (!e || e.retired) throw new RangeError(`shard ${shardId} is not running here`);
    await e.shard.send(payload);
  }

  /** Resolves once every `destroy()` started so far has settled. */
  async settled(): Promise<void> {
    while (this.#destroying.size > 0) await Promise.all([...this.#destroying]);
  }

  /** Stops every shard, closes the CONTROL, and waits for every shard's `destroy()`. */
  async close(): Promise<void> {
    await this.control.close();
    await this.settled();
  }

  // ---- the CONTROL's hooks ----

  async #start(ranges: Range[], ctx: StartContext): Promise<void> {
    const discord = (this.#discord ??= this.#opts.discord ?? (await loadDiscordWs()));
    const manager = this.#ensureManager(discord);
    const strategyOptions = await discord.managerToFetchingStrategyOptions(manager as never);
    // A shard started again (restart, unfence) opens its new session only once the old socket is closed.
    const previous = shardIdsOf(ranges)
      .map((id) => this.#destroyingById.get(id))
      .filter((p): p is Promise<void> => p !== undefined);
    if (previous.length > 0) await Promise.all(previous);
    const running = new Set(shardIdsOf(this.control.running));
    const waits: Array<Promise<void>> = [];
    for (const id of shardIdsOf(ranges)) {
      // Stopped while the gateway information was fetched: nothing to start.
      if (!running.has(id) || ctx.signal.aborted) continue;
      // Started by an overlapping start (a restart while this one was loading): wait for it.
      const existing = this.#shards.get(id);
      if (existing) {
        waits.push(existing.done);
        continue;
      }
      const strategy = new discord.SimpleContextFetchingStrategy(manager as never, strategyOptions as never);
      const shard = new discord.WebSocketShard(strategy as never, id) as DiscordShardLike;
      let settle: () => void = () => undefined;
      const done = new Promise<void>((resolve) => (settle = resolve));
      waits.push(done);
      const entry: Entry = { id, shard, ready: false, retired: false, latency: undefined, done, settle };
      this.#shards.set(id, entry);
      for (const event of SHARD_EVENTS) shard.on(event, (...args: never[]) => this.#onShardEvent(entry, event, args));
      this.stats.started++;
      // Not awaited: it never settles when the shard is destroyed before READY.
      void shard.connect().catch((err: unknown) => this.#emitError(err));
    }
    await Promise.all(waits);
  }

  #stop(ranges: Range[], ctx: StopContext): void {
    for (const id of shardIdsOf(ranges)) {
      const e = this.#shards.get(id);
      if (!e) continue;
      this.#shards.delete(id);
      e.retired = true;
      e.settle();
      const waiting = this.#throttler?.isWaiting(id) ?? false;
      this.stats.stopped++;
      if (waiting) this.stats.stoppedWhileWaiting++;
      this.emit('shardStopped', id, ctx.reason, waiting);
      this.#destroy(e, ctx.reason);
    }
  }

  // ---- shards ----

  #ensureManager(discord: DiscordWsModule): DiscordManagerLike {
    if (this.#manager) return this.#manager;
    const init = this.control.initialise;
    if (!init) throw new Error('MusterShardManager: no INITIALISE from the MASTER yet');
    const throttler = (this.#throttler = new MusterIdentifyThrottler(this.control));
    const strategy = {
      spawn: () => undefined,
      connect: () => undefined,
      // Which shards run is Muster's decision: destroying the manager closes the CONTROL.
      destroy: () => this.close(),
      send: (shardId: number, payload: unknown) => this.send(shardId, payload),
      fetchStatus: () => new Map([...this.#shards.values()].map((e) => [e.id, e.shard.status])),
    };
    const manager = new discord.WebSocketManager({
      ...this.#opts.manager,
      token: init.token,
      shardCount: init.shard_count,
      shardIds: [],
      buildIdentifyThrottler: () => throttler,
      buildStrategy: () => strategy,
    } as never) as DiscordManagerLike;
    this.#manager = manager;
    return manager;
  }

  #onShardEvent(e: Entry, event: (typeof SHARD_EVENTS)[number], args: unknown[]): void {
    if (e.retired) {
      // discord.js reconnected a stopped shard on its own: close it before it identifies.
      if (event === 'hello' || event === 'ready' || event === 'resumed') {
        this.stats.redestroyed++;
        this.#destroy(e, 'stopped by Muster');
      }
      return;
    }
    switch (event) {
      case 'ready':
      case 'resumed':
        if (!e.ready) {
          e.ready = true;
          this.emit('shardReady', e.id);
        }
        e.settle();
        break;
      case 'heartbeat': {
        const latency = (args[0] as { latency?: unknown } | undefined)?.latency;
        if (typeof latency === 'number') e.latency = latency;
        break;
      }
      case 'closed': {
        const code = args[0];
        if (typeof code === 'number' && FATAL_DISCORD_CODES.includes(code) && this.#opts.reportFatal !== false) {
          this.control.fatal(code, `shard ${e.id} closed by Discord with ${code}`);
        }
        if (e.ready) e.ready = false;
        break;
      }
      default:
        break;
    }
    if (event === 'error' && this.listenerCount('error') === 0) return;
    this.emit(event, ...args, e.id);
  }

  #destroy(e: Entry, reason: string): void {
    const p: Promise<void> = e.shard
      .destroy({ code: 1000, reason })
      .then(
        () => {
          this.stats.destroyed++;
          this.emit('shardDestroyed', e.id);
        },
        (err: unknown) => this.#emitError(err),
      )
      .finally(() => {
        this.#destroying.delete(p);
        if (this.#destroyingById.get(e.id) === p) this.#destroyingById.delete(e.id);
      });
    this.#destroying.add(p);
    this.#destroyingById.set(e.id, p);
  }

  #info(): InfoPayload {
    return {
      shards: [...this.#shards.values()].map((e) => ({
        id: e.id,
        status: e.ready ? 'ready' : 'connecting',
        ...(e.latency !== undefined ? { latency_ms: e.latency } : {}),
      })),
    };
  }

  #emitError(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', err instanceof Error ? err : new Error(String(err)));
  }
}

async function loadDiscordWs(): Promise<DiscordWsModule> {
  const specifier = '@discordjs/ws';
  try {
    return (await import(specifier)) as DiscordWsModule;
  } catch (err) {
    throw new Error('MusterShardManager needs @discordjs/ws (npm install @discordjs/ws), or pass it as `discord`', { cause: err });
  }
}
