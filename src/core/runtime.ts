import type { Logger } from 'pino';
import type { Broker, DeliveryTarget } from '../cluster/broker.js';
import type { JsonValue, Store } from '../store/types.js';
import { LogLimiter, type Rate } from './ratelimit.js';
import type { Scheduler, Timer } from './scheduler.js';
import { httpError } from '../common/errors.js';

/**
 * The one dialect runtime. A dialect's world is a pure step, (state, event) → (state,
 * effects); this runtime feeds it every event (frames, deadlines, admin calls, messages
 * from other connections) and carries out the effects it returns. No dialect writes its
 * own feed/run loop.
 *
 * Rules it keeps for every dialect:
 * - Writes first, then frames: a step's `persist` effects are issued before anything
 *   else it returned, and every `send`, `close` and `deliver` after a write waits until
 *   the write is durable (in order). A peer is never told about a change a crash could
 *   lose. A failed write is logged, and what waited on it goes out anyway.
 * - Timers have typed keys. Setting a key replaces its timer; `at: null` cancels it. A
 *   timer that fires feeds the world `timerEvent(key, now)`.
 * - Log lines a peer can cause at will (`peer` set) are limited per peer.
 * - Anything for a connection the world does not hold a socket of here goes through the
 *   Broker (`deliver`), in one process too.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** The effects every dialect's world may return; the runtime carries them out. */
/** `F`: what a frame is (text, or for a dialect that relays bytes as they came, `string | Buffer`). */
export type CoreEffect<K, F extends string | Buffer = string> =
  | { readonly type: 'send'; readonly conn: string; readonly frame: F }
  | { readonly type: 'close'; readonly conn: string; readonly code: number; readonly reason: string }
  /** Sets the timer `key` to fire at `at` (epoch ms), replacing one set before; `null` cancels it. */
  | { readonly type: 'timer'; readonly key: K; readonly at: number | null }
  /**
   * Writes `value` under `key` in the dialect's store namespace (or `namespace`); later
   * frames wait for it. With `settled`, they do not: the world is fed
   * `settledEvent(settled, ok)` once the write has settled and sends what depends on it
   * itself (frames about other things go out meanwhile).
   */
  | { readonly type: 'persist'; readonly key: string; readonly value: JsonValue; readonly namespace?: string; readonly settled?: string }
  /** Deletes `key` from the dialect's store namespace (or `namespace`); as `persist` otherwise. */
  | { readonly type: 'unpersist'; readonly key: string; readonly namespace?: string; readonly settled?: string }
  /** A log line; with `peer`, limited per peer. */
  | { readonly type: 'log'; readonly level: LogLevel; readonly msg: string; readonly data?: Record<string, unknown>; readonly peer?: string }
  /** A frame for connections the world names by target, through the Broker. */
  | { readonly type: 'deliver'; readonly target: DeliveryTarget; readonly frame: F }
  /** The connection joins (leaves) a Broker group of this runtime's scope. */
  | { readonly type: 'join'; readonly conn: string; readonly group: string }
  | { readonly type: 'leave'; readonly conn: string; readonly group: string }
  /**
   * Whether an attached connection takes Broker deliveries (to it, its groups, `all`):
   * on for one attached with `enlist: false` once it may, off when it may no more (it
   * leaves its groups too).
   */
  | { readonly type: 'enlist'; readonly conn: string; readonly on: boolean }
  /**
   * The answer to the admin call being fed (see `DialectRuntime.admin`), or, with `call`,
   * to the call of that id, in this step or a later one (see `DialectRuntime.call`).
   */
  | { readonly type: 'reply'; readonly status: number; readonly body: unknown; readonly call?: string };

export type CoreEffectType = CoreEffect<unknown>['type'];

function isWrite(e: { readonly type: string }): boolean {
  return e.type === 'persist' || e.type === 'unpersist';
}

const CORE_TYPES: ReadonlySet<string> = new Set<CoreEffectType>(['send', 'close', 'timer', 'persist', 'unpersist', 'log', 'deliver', 'reply', 'join', 'leave', 'enlist']);

export function isCoreEffect<K, X extends { readonly type: string }, F extends string | Buffer = string>(e: CoreEffect<K, F> | X): e is CoreEffect<K, F> {
  return CORE_TYPES.has(e.type);
}

/** For the `default` of a switch that must name every case: a new case fails to compile. */
export function assertNever(x: never, what = 'value'): never {
  throw new Error(`unhandled ${what}: ${JSON.stringify(x)}`);
}

/** The socket side of a connection, as far as the runtime needs it (core.Connection fits). */
export interface RuntimeConnection {
  readonly id: string;
  send(frame: string | Buffer): boolean;
  close(code: number, reason: string): void;
}

export interface Stepped<S, F> {
  readonly state: S;
  readonly effects: readonly F[];
}

/** The event a due timer feeds a world, in every dialect: when it fired and which timer. */
export interface TimerEvent<K> {
  readonly type: 'timer';
  readonly now: number;
  readonly key: K;
}

/** `World.timerEvent` for a world whose events include `TimerEvent<K>`. */
export function timerEvent<K>(key: K, now: number): TimerEvent<K> {
  return { type: 'timer', now, key };
}

/**
 * A dialect's world, as the runtime sees it. `X` is the dialect's own effects (metrics,
 * a media backend): `effect` handles them, and should switch over them exhaustively.
 * Their `type`s must not be a core effect's (`CoreEffectType`): those the runtime runs.
 */
export interface World<S, Ev, K, X extends { readonly type: string } = never, F extends string | Buffer = string> {
  step(state: S, event: Ev): Stepped<S, CoreEffect<K, F> | X>;
  /** The event a due timer feeds. */
  timerEvent(key: K, now: number): Ev;
  /** A timer key's identity: two keys with the same id are the same timer. */
  timerId(key: K): string;
  /** Carries out one of the dialect's own effects. */
  effect?(e: X): void;
  /** The event a write with `settled` feeds once it has settled (`ok`: it is durable). */
  settledEvent?(id: string, ok: boolean, now: number): Ev;
}

export interface RuntimeOptions<S, Ev, K, X extends { readonly type: string }, F extends string | Buffer = string> {
  /** For log lines ("sharding: could not persist"). */
  readonly name: string;
  readonly world: World<S, Ev, K, X, F>;
  readonly initial: S;
  readonly scheduler: Scheduler;
  readonly logger: Logger;
  /** Where `persist` writes (absent: a `persist` is a programming error). */
  readonly store?: { readonly store: Store; readonly namespace: string };
  /** Where `deliver` goes (absent: a `deliver` is a programming error). */
  readonly broker?: { readonly broker: Broker; readonly scope: string };
  /** Log lines per peer (default: 5 at once, then 1 a second). */
  readonly peerLogRate?: Rate;
  /**
   * Events are held (in order) until `start()`: for a world that must load its state
   * from the store before anything else happens.
   */
  readonly held?: boolean;
  /**
   * Called before each step; what it returns is handed to `observe` (e.g. a peer's phase
   * before the step, read before the step can change anything).
   */
  readonly peek?: (state: S, event: Ev) => unknown;
  /** Called after every step with the state before and after (metrics, debug lines). */
  readonly observe?: (before: S, after: S, event: Ev, effects: readonly (CoreEffect<K, F> | X)[], peeked: unknown) => void;
}

export interface AdminAnswer {
  readonly status: number;
  readonly body: unknown;
}

const SHUTTING_DOWN: AdminAnswer = httpError('SHUTTING_DOWN', 'the server is shutting down');

export class DialectRuntime<S, Ev, K, X extends { readonly type: string } = never, F extends string | Buffer = string> {
  readonly #o: RuntimeOptions<S, Ev, K, X, F>;
  #state: S;
  readonly #conns = new Map<string, RuntimeConnection>();
  readonly #timers = new Map<string, Timer>();
  /** Calls waiting for a `reply` naming them. */
  readonly #calls = new Map<string, (a: AdminAnswer) => void>();
  readonly #peerLog: LogLimiter<string>;
  #started: boolean;
  #stopped = false;
  readonly #backlog: Array<() => Ev> = [];
  /** Store writes not yet settled that frames wait for; each resolves to whether it was saved. */
  readonly #unsaved = new Set<Promise<boolean>>();
  /** Store writes not yet settled whose outcome the world is told (`settled`). */
  readonly #told = new Set<Promise<void>>();
  /** Frames and closes held until the writes made before them are durable, in order. */
  #outbox: Promise<void> = Promise.resolve();
  #held = 0;

  constructor(opts: RuntimeOptions<S, Ev, K, X, F>) {
    this.#o = opts;
    this.#state = opts.initial;
    this.#started = opts.held !== true;
    this.#peerLog = new LogLimiter<string>(() => opts.scheduler.now(), opts.peerLogRate ?? { perSecond: 1, burst: 5 });
  }

  get state(): S {
    return this.#state;
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Live timers (for summaries and leak checks). */
  get timerCount(): number {
    return this.#timers.size;
  }

  get connectionCount(): number {
    return this.#conns.size;
  }

  connection(id: string): RuntimeConnection | undefined {
    return this.#conns.get(id);
  }

  /**
   * A socket the world may name in `send` and `close`, and the Broker in `deliver`
   * (with `enlist: false`, only once the world enlists it: a peer not yet authenticated).
   */
  attach(conn: RuntimeConnection, enlist = true): void {
    this.#conns.set(conn.id, conn);
    const b = this.#o.broker;
    if (b && enlist) b.broker.attach(b.scope, conn);
  }

  /** The socket has gone: forget it (call before feeding its close). */
  detach(id: string): void {
    this.#conns.delete(id);
    this.#peerLog.forget(id);
    const b = this.#o.broker;
    if (b) b.broker.detach(b.scope, id);
  }

  /** Feeds the world's first event and then everything held back while `held`. */
  start(first?: Ev): void {
    if (this.#started) return;
    this.#started = true;
    if (first !== undefined) this.feed(first);
    for (const ev of this.#backlog.splice(0)) this.feed(ev());
  }

  /**
   * Feeds an event now, or once `start()` has run. The event is built when it is fed,
   * so it carries the time it is fed at.
   */
  enqueue(ev: () => Ev): void {
    if (this.#started) this.feed(ev());
    else this.#backlog.push(ev);
  }

  /** Feeds one event and carries out its effects; returns them. */
  feed(ev: Ev): readonly (CoreEffect<K, F> | X)[] {
    const before = this.#state;
    const peeked = this.#o.peek?.(before, ev);
    const { state, effects } = this.#o.world.step(before, ev);
    this.#state = state;
    this.#o.observe?.(before, state, ev, effects, peeked);
    // Writes first: what the frames below announce is in the store before they go out.
    for (const e of effects) if (isWrite(e)) this.#run(e);
    for (const e of effects) if (!isWrite(e)) this.#run(e);
    return effects;
  }

  /**
   * Feeds an admin call and answers with the world's `reply`. A success (status < 300)
   * is answered only once every write it made is durable; if one failed, the answer is
   * 500 STORE_UNAVAILABLE (the change is in effect in memory).
   */
  async admin(ev: Ev): Promise<AdminAnswer> {
    if (this.#stopped) return SHUTTING_DOWN;
    const effects = this.feed(ev);
    let reply: AdminAnswer | undefined;
    for (const e of effects) if (isCoreEffect<K, X, F>(e) && e.type === 'reply' && e.call === undefined) reply = { status: e.status, body: e.body };
    const saved = (await Promise.all([...this.#unsaved])).every(Boolean);
    if (!saved && reply && reply.status < 300) {
      return httpError('STORE_UNAVAILABLE', 'the change is in effect but could not be saved');
    }
    return reply ?? httpError('INTERNAL', 'no reply');
  }

  /**
   * Feeds an event that the world answers with a `reply` naming `id`, in this step or a
   * later one (a request forwarded to a peer). The answer waits for the writes made
   * before it, as frames do. Calls still open at `stop()` get 503 SHUTTING_DOWN.
   */
  call(id: string, ev: Ev): Promise<AdminAnswer> {
    if (this.#stopped || this.#calls.has(id)) {
      return Promise.resolve(this.#stopped ? SHUTTING_DOWN : httpError('INTERNAL', 'duplicate call id'));
    }
    const answer = new Promise<AdminAnswer>((resolve) => this.#calls.set(id, resolve));
    this.feed(ev);
    return answer;
  }

  /** Calls waiting for their reply. */
  get openCalls(): number {
    return this.#calls.size;
  }

  /** Resolves once every write issued so far has settled and every held frame is out. */
  async settled(): Promise<void> {
    await Promise.all([...this.#unsaved, ...this.#told]);
    await this.#outbox;
  }

  /** Cancels every timer; later timer effects and writes are ignored. Waits for writes in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers.values()) t.cancel();
    this.#timers.clear();
    for (const resolve of this.#calls.values()) resolve(SHUTTING_DOWN);
    this.#calls.clear();
    await this.settled();
  }

  #run(e: CoreEffect<K, F> | X): void {
    if (!isCoreEffect<K, X, F>(e)) {
      const own = this.#o.world.effect;
      if (!own) throw new Error(`${this.#o.name}: the world returned its own effect "${e.type}" but handles none`);
      own.call(this.#o.world, e as X);
      return;
    }
    switch (e.type) {
      case 'send':
      case 'close':
      case 'deliver':
        this.#deliver(e);
        return;
      case 'timer':
        this.#timer(e.key, e.at);
        return;
      case 'persist':
      case 'unpersist':
        this.#persist(e);
        return;
      case 'log': {
        // Lines a peer can cause at will are capped per peer.
        const held = e.peer === undefined ? 0 : this.#peerLog.allow(e.peer);
        if (held === undefined) return;
        this.#o.logger[e.level](held > 0 ? { ...e.data, suppressed: held } : (e.data ?? {}), e.msg);
        return;
      }
      case 'join':
      case 'leave':
      case 'enlist':
        this.#member(e);
        return;
      case 'reply':
        // Without `call`: read by admin(), which fed the event.
        if (e.call !== undefined) this.#answer(e.call, { status: e.status, body: e.body });
        return;
      default:
        assertNever(e, 'effect');
    }
  }

  #member(e: Extract<CoreEffect<K, F>, { type: 'join' | 'leave' | 'enlist' }>): void {
    const b = this.#o.broker;
    if (!b) throw new Error(`${this.#o.name}: a ${e.type} effect, but the runtime has no broker`);
    if (e.type === 'join') {
      if (this.#conns.has(e.conn)) b.broker.join(b.scope, e.group, e.conn);
    } else if (e.type === 'leave') b.broker.leave(b.scope, e.group, e.conn);
    else if (!e.on) b.broker.detach(b.scope, e.conn);
    else {
      const conn = this.#conns.get(e.conn);
      if (conn) b.broker.attach(b.scope, conn);
    }
  }

  /** Answers a call, after the writes made before it are durable. */
  #answer(id: string, a: AdminAnswer): void {
    const resolve = this.#calls.get(id);
    if (!resolve) return;
    this.#calls.delete(id);
    if (this.#unsaved.size === 0 && this.#held === 0) return resolve(a);
    this.#held++;
    this.#outbox = Promise.all([this.#outbox, ...this.#unsaved]).then(() => {
      this.#held--;
      resolve(a);
    });
  }

  #timer(key: K, at: number | null): void {
    const id = this.#o.world.timerId(key);
    this.#timers.get(id)?.cancel();
    this.#timers.delete(id);
    if (at === null || this.#stopped) return;
    const { scheduler } = this.#o;
    const t = scheduler.after(at - scheduler.now(), () => {
      if (this.#timers.get(id) !== t) return;
      this.#timers.delete(id);
      this.feed(this.#o.world.timerEvent(key, scheduler.now()));
    });
    this.#timers.set(id, t);
  }

  /**
   * Writes at once (the store applies writes in call order); frames and closes from now
   * on wait until it is durable, unless the world asked to be told (`settled`).
   */
  #persist(e: Extract<CoreEffect<K, F>, { type: 'persist' | 'unpersist' }>): void {
    if (this.#stopped) return;
    const s = this.#o.store;
    if (!s) throw new Error(`${this.#o.name}: a ${e.type} effect, but the runtime has no store`);
    const ns = e.namespace ?? s.namespace;
    const op = e.type === 'persist' ? s.store.set(ns, e.key, e.value) : s.store.delete(ns, e.key);
    const write = op.then(
      () => true,
      (err: unknown) => {
        this.#o.logger.error({ err, key: e.key }, `${this.#o.name}: could not persist`);
        return false;
      },
    );
    const id = e.settled;
    if (id === undefined) {
      this.#unsaved.add(write);
      void write.then(() => this.#unsaved.delete(write));
      return;
    }
    const told = write.then((ok) => {
      this.#told.delete(told);
      if (this.#stopped) return;
      const settledEvent = this.#o.world.settledEvent;
      if (!settledEvent) throw new Error(`${this.#o.name}: a write with \`settled\`, but the world has no settledEvent`);
      this.feed(settledEvent.call(this.#o.world, id, ok, this.#o.scheduler.now()));
    });
    this.#told.add(told);
    void told.catch((err: unknown) => this.#o.logger.error({ err }, `${this.#o.name}: failed on a settled write`));
  }

  /** Sends, closes or delivers now, or, while writes are unsettled, after them and in order. */
  #deliver(e: Extract<CoreEffect<K, F>, { type: 'send' | 'close' | 'deliver' }>): void {
    if (this.#unsaved.size === 0 && this.#held === 0) return this.#go(e);
    this.#held++;
    this.#outbox = Promise.all([this.#outbox, ...this.#unsaved])
      .then(() => {
        this.#held--;
        this.#go(e);
      })
      .catch((err: unknown) => this.#o.logger.error({ err }, `${this.#o.name}: could not deliver a held frame`));
  }

  #go(e: Extract<CoreEffect<K, F>, { type: 'send' | 'close' | 'deliver' }>): void {
    switch (e.type) {
      case 'send':
        this.#conns.get(e.conn)?.send(e.frame);
        return;
      case 'close':
        this.#conns.get(e.conn)?.close(e.code, e.reason);
        return;
      case 'deliver': {
        const b = this.#o.broker;
        if (!b) throw new Error(`${this.#o.name}: a deliver effect, but the runtime has no broker`);
        b.broker.deliver(b.scope, e.target, e.frame);
        return;
      }
      default:
        assertNever(e, 'delivery');
    }
  }
}
