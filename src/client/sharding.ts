import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
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
} from '../protocols/sharding/messages.js';
import { expand, toRanges, type Range } from '../protocols/sharding/ranges.js';
import { backoffDelay, type BackoffOptions } from './backoff.js';

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

/** The time source: real timers by default; tests pass a manual clock. */
export interface ControlClock {
  now(): number;
  /** Calls `cb` once, `ms` from now; returns a cancel function. */
  wake(ms: number, cb: () => void): () => void;
}

export const systemClock: ControlClock = {
  now: () => Date.now(),
  wake: (ms, cb) => {
    const t = setTimeout(cb, Math.max(0, ms));
    return () => clearTimeout(t);
  },
};

export interface StartContext {
  /** Why: the MASTER's CONNECT or OFFLOAD, a COMMAND restart, or ACKs resuming after a fence. */
  readonly reason: 'connect' | 'offload' | 'command' | 'unfence';
  /** CONNECT marked this CONTROL as a standby. */
  readonly redundant: boolean;
  /** Aborted when every shard of this call is stopped before the call finishes. */
  readonly signal: AbortSignal;
}

export interface StopContext {
  readonly reason: string;
}

export type WebSocketConstructor = new (url: string, options: WebSocket.ClientOptions) => WebSocket;

export interface ShardingControlOptions {
  /** ws(s)://host:port/sharding */
  url: string;
  /** The MASTER's key, sent as `Authorization: <key>`. */
  authorization: string;
  /** This CONTROL's unique name. */
  name: string;
  /** Relative weight in the assignment (default 1). */
  capacity?: number;
  /** Advertised features (default `["identify-queue"]`). */
  features?: string[];
  /** Start serving these shards (call `identifySlot` before each identifies). Resolve once they are connected. */
  start: (shards: Range[], ctx: StartContext) => void | Promise<void>;
  /** Stop serving these shards, at once. */
  stop: (shards: Range[], ctx: StopContext) => void | Promise<void>;
  /** Telemetry for INFO, sent every `infoInterval` ms (default: the heartbeat interval). */
  info?: () => InfoPayload | Record<string, unknown> | undefined | Promise<InfoPayload | Record<string, unknown> | undefined>;
  infoInterval?: number;
  /** Handles a COMMAND; by default restart_shard/restart_cluster stop and start the shards. */
  command?: (command: string, args: Record<string, unknown>) => void | Promise<void>;
  /**
   * Fencing timing. The MASTER sends its `heartbeat_grace`, `reconnect_window` and
   * `fence_margin` in INITIALISE, and those are used. These options override them only
   * when the result still fences before the MASTER offloads (before `heartbeatInterval +
   * heartbeatGrace` without ACK and before `reconnectWindow` disconnected, the MASTER's
   * numbers); otherwise the overrides are refused (an `error` event says so) and the
   * MASTER's timing is used. Against a MASTER that does not send them: these, or the
   * defaults 15000, 30000 and 5000.
   */
  heartbeatGrace?: number | undefined;
  reconnectWindow?: number | undefined;
  fenceMargin?: number | undefined;
  /** false to stay down after a drop; otherwise backoff settings (default 250 ms … 5 s, jittered). */
  reconnect?: false | BackoffOptions;
  /** Delay before retrying while the fleet is halted (close 4006). Default 5000. */
  haltedRetryDelay?: number;
  clock?: ControlClock;
  /** The WebSocket class (default `ws`); for proxies and tests. */
  WebSocket?: WebSocketConstructor;
  headers?: Record<string, string>;
}

interface SlotWaiter {
  resolve: () => void;
  reject: (err: Error) => void;
  cleanup: () => void;
}

interface Batch {
  ids: Set<number>;
  ac: AbortController;
}

/** Why a wait for an identify slot ended without a grant. */
export class IdentifySlotError extends Error {
  override readonly name = 'IdentifySlotError';
  constructor(
    readonly code: 'ABORTED' | 'STOPPED' | 'CLOSED',
    message: string,
  ) {
    super(message);
  }
}

const DEFAULT_BACKOFF: BackoffOptions = { minMs: 250, maxMs: 5000 };

/** The timing a CONTROL fences on (ms). */
export interface FenceTiming {
  readonly heartbeatGrace: number;
  readonly reconnectWindow: number;
  readonly fenceMargin: number;
  /** `master`: INITIALISE's; `override`: the options, checked against INITIALISE's; `local`: options or defaults (the MASTER sent none). */
  readonly source: 'master' | 'override' | 'local';
}

/**
 * The timing to fence on: the MASTER's, unless overrides still fence before the MASTER
 * offloads. `refused` names overrides that would not.
 */
export function fenceTiming(
  init: Pick<InitialisePayload, 'heartbeat_interval' | 'heartbeat_grace' | 'reconnect_window' | 'fence_margin'> | undefined,
  over: { heartbeatGrace?: number | undefined; reconnectWindow?: number | undefined; fenceMargin?: number | undefined },
): FenceTiming & { refused?: string } {
  const local = { heartbeatGrace: over.heartbeatGrace ?? 15_000, reconnectWindow: over.reconnectWindow ?? 30_000, fenceMargin: over.fenceMargin ?? 5_000 };
  if (!init || init.heartbeat_grace === undefined || init.reconnect_window === undefined || init.fence_margin === undefined) return { ...local, source: 'local' };
  const master = { heartbeatGrace: init.heartbeat_grace, reconnectWindow: init.reconnect_window, fenceMargin: init.fence_margin };
  if (over.heartbeatGrace === undefined && over.reconnectWindow === undefined && over.fenceMargin === undefined) return { ...master, source: 'master' };
  const t = {
    heartbeatGrace: over.heartbeatGrace ?? master.heartbeatGrace,
    reconnectWindow: over.reconnectWindow ?? master.reconnectWindow,
    fenceMargin: over.fenceMargin ?? master.fenceMargin,
  };
  const interval = init.heartbeat_interval;
  const ackFence = interval + t.heartbeatGrace - t.fenceMargin;
  const discFence = t.reconnectWindow - t.fenceMargin;
  const problems: string[] = [];
  if (ackFence >= interval + master.heartbeatGrace) problems.push(`without ACK it would fence after ${ackFence} ms, the MASTER offloads after ${interval + master.heartbeatGrace} ms`);
  if (discFence >= master.reconnectWindow) problems.push(`disconnected it would fence after ${discFence} ms, the MASTER offloads after ${master.reconnectWindow} ms`);
  if (problems.length > 0) {
    return { ...master, source: 'master', refused: `fencing overrides (heartbeatGrace, reconnectWindow, fenceMargin) refused: ${problems.join('; ')}; using the MASTER's timing` };
  }
  return { ...t, source: 'override' };
}

export class ShardingControl extends EventEmitter {
  readonly #opts: ShardingControlOptions;
  readonly #clock: ControlClock;
  readonly #WS: WebSocketConstructor;
  #ws: WebSocket | undefined;
  #gen = 0;
  #init: InitialisePayload | undefined;
  #sessionId: string | undefined;
  #pendingSession: string | undefined;
  #identified = false;
  #lastIdentified: IdentifiedPayload | undefined;
  #everIdentified = false;
  #redundant = false;
  #closed = true;
  #attempt = 0;
  #seq = 0;
  #lastAck = 0;
  #unauthorized = false;
  #timing: FenceTiming;
  readonly #running = new Set<number>();
  /** Shards stopped by the ACK fence, restarted if ACKs resume on the same connection. */
  readonly #fenced = new Set<number>();
  readonly #ready = new Set<number>();
  readonly #batches = new Set<Batch>();
  readonly #waiters = new Map<number, SlotWaiter[]>();
  readonly #requested = new Set<number>();
  #connectWaiters: Array<{ resolve: (d: IdentifiedPayload) => void; reject: (e: Error) => void }> = [];
  #hbCancel: (() => void) | undefined;
  #ackFenceCancel: (() => void) | undefined;
  #discFenceCancel: (() => void) | undefined;
  #reconnectCancel: (() => void) | undefined;
  #infoCancel: (() => void) | undefined;
  /** Frames sent and received on the current socket. */
  readonly stats = { framesIn: 0, framesOut: 0 };

  constructor(opts: ShardingControlOptions) {
    super();
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#WS = opts.WebSocket ?? (WebSocket as unknown as WebSocketConstructor);
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
    return toRanges(this.#running);
  }

  /** Shards whose start has finished. */
  get connected(): Range[] {
    return toRanges(this.#ready);
  }

  /** The raw socket of the current connection (tests and diagnostics). */
  get socket(): WebSocket | undefined {
    return this.#ws;
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
      if (!this.#running.has(shardId)) return reject(new IdentifySlotError('STOPPED', `shard ${shardId} is not running on this CONTROL`));
      const onAbort = (): void => {
        this.#removeWaiter(shardId, w);
        this.#cancelIfUnwanted(shardId);
        reject(new IdentifySlotError('ABORTED', `identify slot for shard ${shardId} aborted`));
      };
      const w: SlotWaiter = {
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      const list = this.#waiters.get(shardId);
      if (list) list.push(w);
      else this.#waiters.set(shardId, [w]);
      this.#request(shardId);
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
    this.#requested.clear();
    this.#fenced.clear();
    this.#cancelTimers();
    this.#ackFenceCancel?.();
    this.#ackFenceCancel = undefined;
    this.#discFenceCancel?.();
    this.#discFenceCancel = undefined;
    this.#reconnectCancel?.();
    this.#reconnectCancel = undefined;
    this.#stopIds([...this.#running], 'control closed');
    this.#rejectWaiters(new IdentifySlotError('CLOSED', 'the CONTROL is closed'));
    for (const w of this.#connectWaiters.splice(0)) w.reject(new Error('the CONTROL was closed'));
    const ws = this.#ws;
    this.#ws = undefined;
    this.#gen++;
    if (!ws || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, 'control closing');
      else ws.terminate();
    });
  }

  // ---- the socket ----

  #open(): void {
    this.#reconnectCancel = undefined;
    if (this.#closed) return;
    const gen = ++this.#gen;
    this.stats.framesIn = 0;
    this.stats.framesOut = 0;
    const ws = new this.#WS(this.#opts.url, { headers: { ...this.#opts.headers, authorization: this.#opts.authorization } });
    this.#ws = ws;
    ws.on('message', (buf: Buffer) => {
      if (gen !== this.#gen) return;
      this.stats.framesIn++;
      this.#onFrame(buf.toString('utf8'));
    });
    ws.on('error', (err: Error) => {
      if (gen !== this.#gen) return;
      if (/\b401\b/.test(err.message)) this.#unauthorized = true;
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    ws.on('close', (code: number, reason: Buffer) => {
      if (gen !== this.#gen) return;
      this.#onClose(code, reason.toString());
    });
  }

  #send(frame: string): boolean {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(frame);
    this.stats.framesOut++;
    return true;
  }

  #onClose(code: number, reason: string): void {
    this.#ws = undefined;
    this.#identified = false;
    this.#fenced.clear();
    this.#requested.clear();
    this.#cancelTimers();
    this.emit('close', code, reason);
    if (this.#closed) return;
    if (code === CloseCodes.DEAD_CONNECTION || code === CloseCodes.HALTED || code === CloseCodes.SUPERSEDED) {
      // Our shards are being (or have been) given to someone else: stop at once.
      const why = code === CloseCodes.DEAD_CONNECTION ? 'declared dead by MASTER' : code === CloseCodes.HALTED ? 'fleet halted' : 'superseded';
      this.#stopIds([...this.#running], why);
      if (code !== CloseCodes.SUPERSEDED) this.#sessionId = undefined;
    }
    if (code === CloseCodes.SUPERSEDED) return this.#giveUp(new Error('superseded by a newer connection with this session'));
    if (!this.#discFenceCancel) {
      const { reconnectWindow, fenceMargin } = this.#timing;
      this.#discFenceCancel = this.#clock.wake(Math.max(0, reconnectWindow - fenceMargin), () => {
        this.#discFenceCancel = undefined;
        if (!this.#identified) this.#fence('disconnected from MASTER for reconnectWindow − fenceMargin');
      });
    }
    if (this.#opts.reconnect === false) return this.#giveUp(new Error(`connection closed (${code} ${reason})`));
    if (this.#unauthorized && !this.#everIdentified) return this.#giveUp(new Error('the MASTER refused the Authorization key (HTTP 401)'));
    let delay = backoffDelay(this.#attempt++, this.#opts.reconnect ?? DEFAULT_BACKOFF);
    if (code === CloseCodes.HALTED) delay = Math.max(delay, this.#opts.haltedRetryDelay ?? 5_000);
    this.emit('reconnecting', this.#attempt, delay);
    this.#reconnectCancel = this.#clock.wake(delay, () => this.#open());
  }

  #giveUp(err: Error): void {
    this.#closed = true;
    this.#ackFenceCancel?.();
    this.#ackFenceCancel = undefined;
    this.#discFenceCancel?.();
    this.#discFenceCancel = undefined;
    this.#stopIds([...this.#running], 'control stopped');
    this.#rejectWaiters(new IdentifySlotError('CLOSED', err.message));
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
        shards: toRanges(this.#running),
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
    const ws = this.#ws;
    const drop = (): void => {
      this.#ackFenceCancel = this.#clock.wake(dropAt - this.#clock.now(), () => {
        this.#ackFenceCancel = undefined;
        if (this.#ws === ws) ws?.terminate();
      });
    };
    this.#ackFenceCancel = this.#clock.wake(fenceAt - this.#clock.now(), () => {
      this.#ackFenceCancel = undefined;
      if (this.#identified) for (const id of this.#running) this.#fenced.add(id);
      this.#fence('no ACK from MASTER for heartbeatInterval + heartbeatGrace − fenceMargin');
      drop();
    });
  }

  /** ACKs came back on the same connection before the MASTER gave up on us: serve again. */
  #unfence(): void {
    if (this.#fenced.size === 0 || !this.#identified) return;
    const ids = [...this.#fenced];
    this.#fenced.clear();
    this.emit('unfenced', toRanges(ids));
    this.#startBatch(ids, 'unfence', this.#redundant);
  }

  #onIdentified(d: IdentifiedPayload): void {
    this.#identified = true;
    this.#lastIdentified = d;
    this.#everIdentified = true;
    this.#sessionId = this.#pendingSession;
    this.#redundant = d.redundant;
    this.#attempt = 0;
    this.#discFenceCancel?.();
    this.#discFenceCancel = undefined;
    this.#lastAck = this.#clock.now();
    this.#armAckFence();
    const shardCount = this.#init?.shard_count ?? 0;
    const assigned = new Set(expand(d.shards, shardCount));
    const extra = [...this.#running].filter((id) => !assigned.has(id));
    if (extra.length > 0) this.#stopIds(extra, 'not assigned to this CONTROL');
    // Shards that finished starting while we were away: tell the MASTER.
    const done = [...this.#ready].filter((id) => assigned.has(id));
    if (d.resumed && done.length > 0 && this.#batches.size === 0) this.#send(encodeControl.connected(toRanges(done)));
    for (const shardId of this.#waiters.keys()) this.#request(shardId);
    this.#armInfo();
    this.emit('identified', d);
    for (const w of this.#connectWaiters.splice(0)) w.resolve(d);
  }

  #onConnect(d: ConnectPayload): void {
    this.#redundant = d.redundant;
    this.emit('connect', d);
    this.#startBatch(expand(d.shards, this.#init?.shard_count ?? 0), 'connect', d.redundant);
  }

  #onOffload(d: OffloadPayload): void {
    this.#redundant = false;
    this.emit('offload', d);
    this.#startBatch(expand(d.shards, this.#init?.shard_count ?? 0), 'offload', false);
  }

  #onShutdown(d: ShutdownPayload): void {
    this.emit('shutdown', d);
    const ids = d.shards === undefined ? [...this.#running] : expand(d.shards, this.#init?.shard_count ?? 0);
    this.#stopIds(ids, d.reason);
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
    let ids: number[] = [];
    if (d.command === 'restart_shard' && typeof d.args.shard_id === 'number') ids = [d.args.shard_id];
    else if (d.command === 'restart_cluster' && Array.isArray(d.args.shards)) {
      // Ranges, or a flat list of shard ids.
      const list = d.args.shards as unknown[];
      const ranges = list.map((x) => (typeof x === 'number' ? ([x, x] as Range) : (x as Range)));
      ids = expand(ranges, this.#init?.shard_count ?? 0);
    }
    ids = ids.filter((id) => this.#running.has(id));
    if (ids.length === 0) return;
    this.#stopIds(ids, `command ${d.command}`);
    this.#startBatch(ids, 'command', this.#redundant, false);
  }

  #onGrant(shardId: number): void {
    this.#requested.delete(shardId);
    this.emit('grant', shardId);
    const list = this.#waiters.get(shardId);
    const w = list?.shift();
    if (list && list.length === 0) this.#waiters.delete(shardId);
    if (w) {
      w.cleanup();
      w.resolve();
    }
    if (this.#waiters.has(shardId)) this.#request(shardId);
  }

  // ---- shards ----

  /** `connecting`: announce the start with CONNECTING (not for a COMMAND restart); CONNECTED always follows once it is up. */
  #startBatch(ids: number[], reason: StartContext['reason'], redundant: boolean, connecting = true): void {
    if (connecting) this.#send(encodeControl.connecting());
    const fresh = ids.filter((id) => !this.#running.has(id));
    for (const id of fresh) this.#running.add(id);
    const batch: Batch = { ids: new Set(fresh), ac: new AbortController() };
    this.#batches.add(batch);
    const finish = (): void => {
      this.#batches.delete(batch);
      if (batch.ac.signal.aborted) return;
      for (const id of batch.ids) if (this.#running.has(id)) this.#ready.add(id);
      if (fresh.length > 0) this.emit('started', toRanges(batch.ids));
      // Report what this CONNECT/OFFLOAD (or restart) asked for and is now up, not older
      // shards: an older one may be moving away at this very moment. A restarted shard is
      // reported too: the MASTER may never have heard it CONNECTED (stopped before READY).
      const up = ids.filter((id) => this.#ready.has(id));
      if (this.#identified && (connecting || up.length > 0)) this.#send(encodeControl.connected(toRanges(up)));
    };
    if (fresh.length === 0) {
      queueMicrotask(finish);
      return;
    }
    Promise.resolve()
      .then(() => this.#opts.start(toRanges(fresh), { reason, redundant, signal: batch.ac.signal }))
      .then(finish, (err: unknown) => {
        this.#batches.delete(batch);
        for (const id of batch.ids) this.#running.delete(id);
        this.#emitError(err);
      });
  }

  #stopIds(ids: number[], reason: string): void {
    for (const id of ids) this.#fenced.delete(id);
    const stopping = ids.filter((id) => this.#running.has(id));
    for (const id of stopping) {
      this.#running.delete(id);
      this.#ready.delete(id);
    }
    for (const b of this.#batches) {
      for (const id of stopping) b.ids.delete(id);
      if (b.ids.size === 0) b.ac.abort();
    }
    for (const id of stopping) {
      const list = this.#waiters.get(id);
      if (!list) continue;
      this.#waiters.delete(id);
      for (const w of list) {
        w.cleanup();
        w.reject(new IdentifySlotError('STOPPED', `shard ${id} was stopped (${reason})`));
      }
      this.#cancelIfUnwanted(id);
    }
    if (stopping.length === 0) return;
    const ranges = toRanges(stopping);
    // Called synchronously: a fence must not wait for the event loop.
    try {
      const r = this.#opts.stop(ranges, { reason });
      if (r instanceof Promise) r.catch((err: unknown) => this.#emitError(err));
    } catch (err) {
      this.#emitError(err);
    }
    this.emit('stopped', ranges, reason);
  }

  #fence(reason: string): void {
    if (this.#running.size === 0) return;
    const keep = [...this.#fenced];
    this.#stopIds([...this.#running], `fenced: ${reason}`);
    for (const id of keep) this.#fenced.add(id);
    this.emit('fenced', reason);
  }

  #request(shardId: number): void {
    if (!this.#identified || this.#requested.has(shardId)) return;
    if (this.#send(encodeControl.identifyRequest(shardId))) this.#requested.add(shardId);
  }

  /** Nobody waits for this shard's grant any more: withdraw the request (IDENTIFY_CANCEL), so it spends no window. */
  #cancelIfUnwanted(shardId: number): void {
    if (this.#waiters.has(shardId) || !this.#requested.has(shardId)) return;
    this.#requested.delete(shardId);
    this.#send(encodeControl.identifyCancel(shardId));
  }

  #removeWaiter(shardId: number, w: SlotWaiter): void {
    const list = this.#waiters.get(shardId);
    if (!list) return;
    const i = list.indexOf(w);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.#waiters.delete(shardId);
  }

  #rejectWaiters(err: Error): void {
    for (const list of this.#waiters.values()) {
      for (const w of list) {
        w.cleanup();
        w.reject(err);
      }
    }
    this.#waiters.clear();
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
