import { EventEmitter } from 'node:events';
import type WebSocket from 'ws';
import {
  CloseCodes,
  decodeMasterFrame,
  encodeControl,
  Op,
  type CommandPayload,
  type ConnectPayload,
  type ErrorPayload,
  type IdentifiedPayload,
  type InfoPayload,
  type InitialisePayload,
  type MasterFrame,
  type OffloadPayload,
  type ShutdownPayload,
  shardingCloseCodes,
} from '../protocols/sharding/messages.js';
import { expand, toRanges, type Range } from '../protocols/sharding/ranges.js';
import type { BackoffOptions } from './backoff.js';
import { systemClock, type ClientClock } from './clock.js';
import { fenceTiming, IdentifySlotError, type FenceTiming, type ShardingControlOptions } from './sharding-options.js';
import { restartTargets, Shards } from './sharding-shards.js';
import { IdentifySlots } from './sharding-slots.js';
import { ReconnectingSocket } from './socket.js';

/**
 * A CONTROL for Muster's sharding dialect. It connects with the Authorization key,
 * identifies (with its session_id and the shards it still serves when it
 * reconnects), heartbeats, and turns CONNECT, OFFLOAD, SHUTDOWN and COMMAND into calls
 * of the `start` and `stop` hooks you provide, reporting CONNECTING and CONNECTED.
 * `identifySlot(shardId)` waits for the MASTER's grant before a shard may identify
 * with Discord.
 *
 * It fences itself, as the contract asks: once it has heard no ACK for
 * `heartbeatInterval + heartbeatGrace − fenceMargin`, or has been disconnected for
 * `reconnectWindow − fenceMargin`, it stops every shard, because the MASTER is about to
 * give them to someone else. The timing is the MASTER's, from INITIALISE; options may only
 * make it fence earlier (see `heartbeatGrace`). If ACKs come back on the same connection
 * before the MASTER closed it, it restarts the fenced shards (it still owns them). Without an ACK for
 * `heartbeatInterval + heartbeatGrace + fenceMargin` (past the MASTER's deadline) it
 * drops the socket and reconnects. A close with 4001 (declared dead), 4005 (superseded)
 * or 4006 (fleet halted) stops every shard at once.
 *
 * Events: `initialise` (INITIALISE d), `identified` (IDENTIFIED d), `connect`,
 * `offload`, `shutdown`, `command` (their d), `grant` (shardId), `started` (ranges),
 * `stopped` (ranges, reason), `fenced` (reason), `unfenced` (ranges), `protocolError` (ERROR d),
 * `close` (code, reason), `reconnecting` (attempt, delayMs), `error` (Error).
 */

export { systemClock } from './clock.js';
export type { WebSocketConstructor } from './socket.js';
export {
  fenceTiming,
  IdentifySlotError,
  type ControlClock,
  type FenceTiming,
  type ShardingControlOptions,
  type StartContext,
  type StopContext,
} from './sharding-options.js';

const DEFAULT_BACKOFF: BackoffOptions = { minMs: 250, maxMs: 5000 };

export class ShardingControl extends EventEmitter {
  readonly #opts: ShardingControlOptions;
  readonly #clock: ClientClock;
  readonly #link: ReconnectingSocket;
  #init: InitialisePayload | undefined;
  #sessionId: string | undefined;
  #pendingSession: string | undefined;
  #identified = false;
  #lastIdentified: IdentifiedPayload | undefined;
  #everIdentified = false;
  #redundant = false;
  #closed = true;
  #seq = 0;
  #lastAck = 0;
  #unauthorized = false;
  #timing: FenceTiming;
  readonly #shards: Shards;
  readonly #slots: IdentifySlots;
  #connectWaiters: Array<{ resolve: (d: IdentifiedPayload) => void; reject: (e: Error) => void }> = [];
  #hbCancel: (() => void) | undefined;
  #ackFenceCancel: (() => void) | undefined;
  #discFenceCancel: (() => void) | undefined;
  #infoCancel: (() => void) | undefined;
  /** Frames sent and received on the current socket. */
  readonly stats = { framesIn: 0, framesOut: 0 };

  constructor(opts: ShardingControlOptions) {
    super();
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#link = new ReconnectingSocket(
      {
        url: opts.url,
        socketOptions: () => ({ headers: { ...opts.headers, authorization: opts.authorization } }),
        ...(opts.WebSocket ? { WebSocket: opts.WebSocket } : {}),
        closeCodes: shardingCloseCodes,
        reconnect: opts.reconnect,
        defaultBackoff: DEFAULT_BACKOFF,
        clock: this.#clock,
      },
      {
        message: (buf) => {
          this.stats.framesIn++;
          this.#onFrame(buf.toString('utf8'));
        },
        error: (err) => {
          if (/\b401\b/.test(err.message)) this.#unauthorized = true;
          if (this.listenerCount('error') > 0) this.emit('error', err);
        },
        close: (code, reason) => this.#onClose(code, reason),
      },
    );
    this.#shards = new Shards({
      start: opts.start,
      stop: opts.stop,
      send: (frame) => this.#send(frame),
      identified: () => this.#identified,
      emit: (event, ...args) => this.emit(event, ...args),
      error: (err) => this.#emitError(err),
      stopped: (id, reason) => this.#slots.stopped(id, reason),
    });
    this.#slots = new IdentifySlots(
      (frame) => this.#send(frame),
      () => this.#identified,
    );
    this.#timing = fenceTiming(undefined, opts);
  }

  /** The timing this CONTROL fences on: the MASTER's from INITIALISE, or accepted overrides. */
  get fenceTiming(): FenceTiming {
    return this.#timing;
  }

  get name(): string {
    return this.#opts.name;
  }

  /** The session id of the last successful IDENTIFY (sent again on reconnect). */
  get sessionId(): string | undefined {
    return this.#sessionId;
  }

  /** The last INITIALISE: token, heartbeat_interval, shard_count, max_concurrency, session_id. */
  get initialise(): InitialisePayload | undefined {
    return this.#init;
  }

  get identified(): boolean {
    return this.#identified;
  }

  get redundant(): boolean {
    return this.#redundant;
  }

  /** Shards being served or started. */
  get running(): Range[] {
    return toRanges(this.#shards.running);
  }

  /** Shards whose start has finished. */
  get connected(): Range[] {
    return toRanges(this.#shards.ready);
  }

  /** The raw socket of the current connection (tests and diagnostics). */
  get socket(): WebSocket | undefined {
    return this.#link.socket;
  }

  /** Connects and identifies; resolves with the first IDENTIFIED. Reconnects on its own afterwards. */
  connect(): Promise<IdentifiedPayload> {
    if (this.#identified && this.#lastIdentified) return Promise.resolve(this.#lastIdentified);
    const p = new Promise<IdentifiedPayload>((resolve, reject) => this.#connectWaiters.push({ resolve, reject }));
    if (this.#closed) {
      this.#closed = false;
      this.#unauthorized = false;
      this.#open();
    }
    return p;
  }

  /**
   * Waits for the MASTER's IDENTIFY_GRANT for this shard (fleet-wide, one per bucket per
   * identify window). Rejects when `signal` aborts, the shard is not (or no longer)
   * running on this CONTROL, or the CONTROL is closed. While disconnected, the request
   * is sent after re-identifying. When the last wait for a shard ends without its grant,
   * the request is withdrawn (IDENTIFY_CANCEL). With `@discordjs/ws`, use
   * `MusterIdentifyThrottler`, which rejects only on abort.
   */
  identifySlot(shardId: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(new IdentifySlotError('ABORTED', `identify slot for shard ${shardId} aborted`));
      if (this.#closed) return reject(new IdentifySlotError('CLOSED', 'the CONTROL is closed'));
      // Only a shard this CONTROL is starting may identify (it may have been stopped meanwhile).
      if (!this.#shards.running.has(shardId)) return reject(new IdentifySlotError('STOPPED', `shard ${shardId} is not running on this CONTROL`));
      this.#slots.wait(shardId, signal, resolve, reject);
    });
  }

  /** Sends INFO now. */
  sendInfo(d: InfoPayload | Record<string, unknown>): void {
    this.#send(encodeControl.info(d));
  }

  /** Reports a Discord close code that must not be retried: the MASTER halts the fleet. */
  fatal(code: number, message: string): void {
    this.#send(encodeControl.fatal({ code, message }));
  }

  /** Stops every shard, closes with 1000, and does not reconnect. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#identified = false;
    this.#slots.forgetRequests();
    this.#shards.fenced.clear();
    this.#cancelTimers();
    this.#ackFenceCancel?.();
    this.#ackFenceCancel = undefined;
    this.#discFenceCancel?.();
    this.#discFenceCancel = undefined;
    this.#link.cancelReconnect();
    this.#shards.stop([...this.#shards.running], 'control closed');
    this.#slots.rejectAll(new IdentifySlotError('CLOSED', 'the CONTROL is closed'));
    for (const w of this.#connectWaiters.splice(0)) w.reject(new Error('the CONTROL was closed'));
    await this.#link.close((ws) => ws.close(1000, 'control closing'), { detach: true });
  }

  // ---- the socket ----

  #open(): void {
    if (this.#closed) return;
    this.stats.framesIn = 0;
    this.stats.framesOut = 0;
    this.#link.open();
  }

  #send(frame: string): boolean {
    if (!this.#link.send(frame)) return false;
    this.stats.framesOut++;
    return true;
  }

  #onClose(code: number, reason: string): void {
    this.#identified = false;
    this.#shards.fenced.clear();
    this.#slots.forgetRequests();
    this.#cancelTimers();
    this.emit('close', code, reason);
    if (this.#closed) return;
    if (code === CloseCodes.DEAD_CONNECTION || code === CloseCodes.HALTED || code === CloseCodes.SUPERSEDED) {
      // Our shards are being (or have been) given to someone else: stop at once.
      const why = code === CloseCodes.DEAD_CONNECTION ? 'declared dead by MASTER' : code === CloseCodes.HALTED ? 'fleet halted' : 'superseded';
      this.#shards.stop([...this.#shards.running], why);
      if (code !== CloseCodes.SUPERSEDED) this.#sessionId = undefined;
    }
    // The close-code table decides: a superseded session, a bad frame or reconnect: false end here.
    if (!this.#link.shouldRetry(code, reason)) {
      if (code === CloseCodes.SUPERSEDED) return this.#giveUp(new Error('superseded by a newer connection with this session'));
      if (this.#opts.reconnect === false) return this.#giveUp(new Error(`connection closed (${code} ${reason})`));
      return this.#giveUp(new Error(`the MASTER closed the connection with ${code} (${reason}), which is not retried`));
    }
    if (!this.#discFenceCancel) {
      const { reconnectWindow, fenceMargin } = this.#timing;
      this.#discFenceCancel = this.#clock.wake(Math.max(0, reconnectWindow - fenceMargin), () => {
        this.#discFenceCancel = undefined;
        if (!this.#identified) this.#shards.fence('disconnected from MASTER for reconnectWindow − fenceMargin');
      });
    }
    if (this.#unauthorized && !this.#everIdentified) return this.#giveUp(new Error('the MASTER refused the Authorization key (HTTP 401)'));
    const minDelay = code === CloseCodes.HALTED ? (this.#opts.haltedRetryDelay ?? 5_000) : 0;
    const { attempt, delay } = this.#link.reconnectLater(() => this.#open(), minDelay);
    this.emit('reconnecting', attempt, delay);
  }

  #giveUp(err: Error): void {
    this.#closed = true;
    this.#ackFenceCancel?.();
    this.#ackFenceCancel = undefined;
    this.#discFenceCancel?.();
    this.#discFenceCancel = undefined;
    this.#shards.stop([...this.#shards.running], 'control stopped');
    this.#slots.rejectAll(new IdentifySlotError('CLOSED', err.message));
    for (const w of this.#connectWaiters.splice(0)) w.reject(err);
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /**
   * Stops the heartbeat and INFO loops. The ACK fence keeps running across a disconnect: the
   * MASTER may not have seen the socket go (a half-open connection) and will then declare
   * this CONTROL dead at its heartbeat deadline, which the ACK fence precedes.
   */
  #cancelTimers(): void {
    this.#hbCancel?.();
    this.#hbCancel = undefined;
    this.#infoCancel?.();
    this.#infoCancel = undefined;
  }

  // ---- frames from the MASTER ----

  #onFrame(text: string): void {
    const res = decodeMasterFrame(text);
    if (!res.ok) {
      if (this.listenerCount('error') > 0) this.emit('error', new Error(`bad frame from MASTER: ${res.detail}`));
      return;
    }
    const f: MasterFrame = res.frame;
    switch (f.o) {
      case Op.INITIALISE:
        return this.#onInitialise(f.d);
      case Op.IDENTIFIED:
        return this.#onIdentified(f.d);
      case Op.ACK:
        this.#lastAck = this.#clock.now();
        this.#armAckFence();
        this.#unfence();
        return;
      case Op.CONNECT:
        return this.#onConnect(f.d);
      case Op.OFFLOAD:
        return this.#onOffload(f.d);
      case Op.SHUTDOWN:
        return this.#onShutdown(f.d);
      case Op.COMMAND:
        return this.#onCommand(f.d);
      case Op.ERROR:
        this.emit('protocolError', f.d as ErrorPayload);
        return;
      case Op.IDENTIFY_GRANT:
        return this.#onGrant(f.d.shard_id);
    }
  }

  #onInitialise(d: InitialisePayload): void {
    this.#init = d;
    const { refused, ...timing } = fenceTiming(d, this.#opts);
    this.#timing = timing;
    if (refused !== undefined) this.#emitError(new Error(refused));
    this.#pendingSession = d.session_id;
    this.emit('initialise', d);
    this.#send(
      encodeControl.identify({
        name: this.#opts.name,
        capacity: this.#opts.capacity ?? 1,
        shards: toRanges(this.#shards.running),
        ...(this.#sessionId !== undefined ? { session_id: this.#sessionId } : {}),
        features: this.#opts.features ?? ['identify-queue'],
      }),
    );
    // A first connection starts the ACK clock; a reconnect keeps the running one (the
    // previous connection's last ACK) until IDENTIFIED proves the MASTER has us again.
    if (!this.#ackFenceCancel) {
      this.#lastAck = this.#clock.now();
      this.#armAckFence();
    }
    const interval = Math.max(1, d.heartbeat_interval);
    const beat = (): void => {
      this.#hbCancel = this.#clock.wake(interval, () => {
        this.#send(encodeControl.heartbeat(++this.#seq));
        beat();
      });
    };
    this.#hbCancel?.();
    beat();
  }

  /**
   * Two deadlines hang on the last ACK. At `interval + grace − margin` the CONTROL fences
   * (stops every shard): the MASTER may declare it dead soon. At `interval + grace +
   * margin`, after the MASTER's own deadline, it drops the socket and reconnects. Had it
   * dropped the socket earlier, the MASTER would see a disconnect and wait a whole
   * reconnectWindow before moving the shards.
   */
  #armAckFence(): void {
    this.#ackFenceCancel?.();
    const interval = this.#init?.heartbeat_interval ?? 30_000;
    const { heartbeatGrace, fenceMargin } = this.#timing;
    const fenceAt = this.#lastAck + Math.max(0, interval + heartbeatGrace - fenceMargin);
    // Past the MASTER's own deadline (which an override may not move).
    const masterGrace = this.#init?.heartbeat_grace ?? heartbeatGrace;
    const masterMargin = this.#init?.fence_margin ?? fenceMargin;
    const dropAt = this.#lastAck + interval + Math.max(heartbeatGrace + fenceMargin, masterGrace + masterMargin);
    const ws = this.#link.socket;
    const drop = (): void => {
      this.#ackFenceCancel = this.#clock.wake(dropAt - this.#clock.now(), () => {
        this.#ackFenceCancel = undefined;
        if (this.#link.socket === ws) ws?.terminate();
      });
    };
    this.#ackFenceCancel = this.#clock.wake(fenceAt - this.#clock.now(), () => {
      this.#ackFenceCancel = undefined;
      if (this.#identified) for (const id of this.#shards.running) this.#shards.fenced.add(id);
      this.#shards.fence('no ACK from MASTER for heartbeatInterval + heartbeatGrace − fenceMargin');
      drop();
    });
  }

  /** ACKs came back on the same connection before the MASTER gave up on us: serve again. */
  #unfence(): void {
    if (this.#shards.fenced.size === 0 || !this.#identified) return;
    const ids = [...this.#shards.fenced];
    this.#shards.fenced.clear();
    this.emit('unfenced', toRanges(ids));
    this.#shards.start(ids, 'unfence', this.#redundant);
  }

  #onIdentified(d: IdentifiedPayload): void {
    this.#identified = true;
    this.#lastIdentified = d;
    this.#everIdentified = true;
    this.#sessionId = this.#pendingSession;
    this.#redundant = d.redundant;
    this.#link.succeeded();
    this.#discFenceCancel?.();
    this.#discFenceCancel = undefined;
    this.#lastAck = this.#clock.now();
    this.#armAckFence();
    const shardCount = this.#init?.shard_count ?? 0;
    const assigned = new Set(expand(d.shards, shardCount));
    const extra = [...this.#shards.running].filter((id) => !assigned.has(id));
    if (extra.length > 0) this.#shards.stop(extra, 'not assigned to this CONTROL');
    // Shards that finished starting while we were away: tell the MASTER.
    const done = [...this.#shards.ready].filter((id) => assigned.has(id));
    if (d.resumed && done.length > 0 && this.#shards.idle) this.#send(encodeControl.connected(toRanges(done)));
    this.#slots.requestWaiting();
    this.#armInfo();
    this.emit('identified', d);
    for (const w of this.#connectWaiters.splice(0)) w.resolve(d);
  }

  #onConnect(d: ConnectPayload): void {
    this.#redundant = d.redundant;
    this.emit('connect', d);
    this.#shards.start(expand(d.shards, this.#init?.shard_count ?? 0), 'connect', d.redundant);
  }

  #onOffload(d: OffloadPayload): void {
    this.#redundant = false;
    this.emit('offload', d);
    this.#shards.start(expand(d.shards, this.#init?.shard_count ?? 0), 'offload', false);
  }

  #onShutdown(d: ShutdownPayload): void {
    this.emit('shutdown', d);
    const ids = d.shards === undefined ? [...this.#shards.running] : expand(d.shards, this.#init?.shard_count ?? 0);
    this.#shards.stop(ids, d.reason);
  }

  #onCommand(d: CommandPayload): void {
    this.emit('command', d);
    const custom = this.#opts.command;
    if (custom) {
      Promise.resolve()
        .then(() => custom(d.command, d.args))
        .catch((err: unknown) => this.#emitError(err));
      return;
    }
    const ids = restartTargets(d, this.#init?.shard_count ?? 0).filter((id) => this.#shards.running.has(id));
    if (ids.length === 0) return;
    this.#shards.stop(ids, `command ${d.command}`);
    this.#shards.start(ids, 'command', this.#redundant, false);
  }

  #onGrant(shardId: number): void {
    this.emit('grant', shardId);
    this.#slots.grant(shardId);
  }

  #armInfo(): void {
    const info = this.#opts.info;
    this.#infoCancel?.();
    this.#infoCancel = undefined;
    if (!info) return;
    const every = Math.max(1, this.#opts.infoInterval ?? this.#init?.heartbeat_interval ?? 30_000);
    const tick = (): void => {
      this.#infoCancel = this.#clock.wake(every, () => {
        Promise.resolve()
          .then(info)
          .then((d) => {
            if (d !== undefined && this.#identified) this.sendInfo(d);
          })
          .catch((err: unknown) => this.#emitError(err));
        tick();
      });
    };
    tick();
  }

  #emitError(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', err instanceof Error ? err : new Error(String(err)));
  }
}

export { MusterIdentifyThrottler, shardIdsOf, type IdentifySlotSource } from './discordjs.js';
