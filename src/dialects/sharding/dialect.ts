import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { Connection } from '../../core/connection.js';
import type { ConnectionHandler, Dialect, DialectContext, HttpReply, HttpRoute, UpgradeVerdict } from '../../core/dialect.js';
import { LogLimiter } from '../../core/ratelimit.js';
import type { Timer } from '../../core/scheduler.js';
import { CloseCodes, decodeControlFrame, Op, shardingCloseCodes } from '../../protocols/sharding/messages.js';
import {
  controlState,
  controlView,
  fleetView,
  initialState,
  queueConfig,
  shardState,
  shardsView,
  step,
  timerId,
  type AdminAction,
  type ControlState,
  type Effect,
  type FleetEvent,
  type FleetState,
  type MachineConfig,
  type PersistKey,
  type ShardState,
} from './machine.js';
import { budgetRemaining } from './identify-queue.js';

/**
 * The sharding dialect's runtime: it feeds the orchestrator (machine.ts) with socket
 * events, deadlines, admin calls and the store load, and carries out the effects.
 */
export interface ShardingDialectConfig extends MachineConfig {
  readonly path: string;
  readonly authorization: string;
}

export interface ShardingDialectDeps {
  secretEquals: (a: string, b: string) => boolean;
}

/** Store namespace of the sharding dialect. */
export const STORE_NS = 'sharding';

const SHARD_STATES: readonly ShardState[] = ['unassigned', 'pending', 'assigned', 'connecting', 'connected', 'disconnected', 'halted'];
const CONTROL_STATES: readonly ControlState[] = ['waiting', 'connecting', 'ready', 'standby', 'disconnected'];

/** Unsent bytes per CONTROL before it is treated as a slow consumer. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
/** Log lines one CONTROL socket can cause at will (ERROR frames): 5 at once, then 1 a second. */
const PEER_LOG_RATE = { perSecond: 1, burst: 5 };

export class ShardingDialect implements Dialect {
  readonly name = 'sharding';
  readonly path: string;
  readonly closeCodes = shardingCloseCodes;
  readonly maxBufferedBytes = MAX_BUFFERED_BYTES;

  #cfg: ShardingDialectConfig;
  readonly #ctx: DialectContext;
  readonly #deps: ShardingDialectDeps;
  #state: FleetState;
  readonly #conns = new Map<string, Connection>();
  readonly #timers = new Map<string, Timer>();
  readonly #peerLog = new LogLimiter<string>(() => this.#now(), PEER_LOG_RATE);
  #loaded = false;
  #stopped = false;
  #warnedBotToken = false;
  readonly #backlog: Array<() => FleetEvent> = [];
  readonly #ready: Promise<void>;
  /** Store writes not yet settled; each resolves to whether it was saved. */
  readonly #unsaved = new Set<Promise<boolean>>();
  /** Frames and closes held until the writes made before them are durable, in order. */
  #outbox: Promise<void> = Promise.resolve();
  #held = 0;
  readonly #m: { grants: Counter; failover: Histogram; fatal: Counter };

  constructor(cfg: ShardingDialectConfig, ctx: DialectContext, deps: ShardingDialectDeps) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#deps = deps;
    this.path = cfg.path;
    this.#state = initialState(cfg, ctx.scheduler.now());
    const registers = [ctx.registry];
    const read = (): FleetState => this.#state;
    const config = (): ShardingDialectConfig => this.#cfg;
    new Gauge({
      name: 'muster_sharding_shards',
      help: 'Shards by state',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<string, number>(SHARD_STATES.map((s) => [s, 0]));
        const st = read();
        st.shards.forEach((_, id) => {
          const k = shardState(st, id);
          counts.set(k, (counts.get(k) ?? 0) + 1);
        });
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'muster_sharding_controls',
      help: 'CONTROLs by state',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<string, number>(CONTROL_STATES.map((s) => [s, 0]));
        const st = read();
        for (const rec of st.controls.values()) {
          const k = controlState(st, rec);
          counts.set(k, (counts.get(k) ?? 0) + 1);
        }
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'muster_sharding_identify_queue_depth',
      help: 'IDENTIFY_REQUESTs waiting for a grant',
      registers,
      collect() {
        this.set(read().queue.waiting.length);
      },
    });
    new Gauge({
      name: 'muster_sharding_budget_remaining',
      help: 'Session starts left in the daily identify budget (sessionStartLimit)',
      registers,
      collect() {
        this.set(budgetRemaining(read().queue, ctx.scheduler.now(), queueConfig(config())));
      },
    });
    new Gauge({
      name: 'muster_sharding_halted',
      help: '1 while the fleet is halted',
      registers,
      collect() {
        this.set(read().phase === 'halted' ? 1 : 0);
      },
    });
    this.#m = {
      grants: new Counter({ name: 'muster_sharding_identify_grants_total', help: 'IDENTIFY_GRANTs sent', registers }),
      fatal: new Counter({ name: 'muster_sharding_halts_total', help: 'Fleet halts (FATAL or operator)', registers }),
      failover: new Histogram({
        name: 'muster_sharding_failover_duration_seconds',
        help: "From losing a shard's owner (last heartbeat, or disconnect) to its new owner reporting CONNECTED",
        buckets: [1, 5, 10, 20, 30, 45, 60, 90, 120, 300],
        registers,
      }),
    };
    this.#ready = this.#load();
  }

  /** The orchestrator's state (read-only; for tests and the admin views). */
  get state(): FleetState {
    return this.#state;
  }

  /** Resolves once the stored assignment, halt state and budget are loaded. */
  get ready(): Promise<void> {
    return this.#ready;
  }

  async #load(): Promise<void> {
    const { store } = this.#ctx;
    let fleet: unknown;
    let assignment: unknown;
    let budget: unknown;
    try {
      [fleet, assignment, budget] = await Promise.all([store.get(STORE_NS, 'fleet'), store.get(STORE_NS, 'assignment'), store.get(STORE_NS, 'budget')]);
    } catch (err) {
      this.#ctx.logger.error({ err }, 'sharding: could not load the stored assignment; starting afresh');
    }
    this.#loaded = true;
    this.#feed({ type: 'loaded', now: this.#now(), fleet, assignment, budget });
    for (const ev of this.#backlog.splice(0)) this.#feed(ev());
  }

  #now(): number {
    return this.#ctx.scheduler.now();
  }

  authorizeUpgrade(req: IncomingMessage): UpgradeVerdict {
    const h = req.headers.authorization;
    const key = typeof h === 'string' ? h : undefined;
    const ok = key !== undefined && (this.#deps.secretEquals(key, this.#cfg.authorization) || (key.startsWith('Bearer ') && this.#deps.secretEquals(key.slice(7), this.#cfg.authorization)));
    return ok ? { ok: true } : { ok: false, status: 401, message: 'Missing or wrong Authorization key' };
  }

  accept(conn: Connection): ConnectionHandler {
    this.#conns.set(conn.id, conn);
    const sessionId = randomUUID();
    this.#enqueue(() => ({ type: 'open', now: this.#now(), conn: conn.id, sessionId }));
    return {
      onMessage: (data, binary) => {
        const detail = binary ? 'binary frames are not accepted; send JSON text' : undefined;
        const now = this.#now();
        if (detail !== undefined) return this.#enqueue(() => ({ type: 'malformed', now, conn: conn.id, detail }));
        const res = decodeControlFrame(data.toString('utf8'));
        this.#enqueue(() => (res.ok ? { type: 'message', now, conn: conn.id, frame: res.frame } : { type: 'malformed', now, conn: conn.id, detail: res.detail }));
        // A WebSocket ping beside each HEARTBEAT's ACK: its pong gives the CONTROL's round trip (conn.latencyMs).
        if (res.ok && res.frame.o === Op.HEARTBEAT) conn.ping();
      },
      onClose: () => {
        this.#conns.delete(conn.id);
        this.#peerLog.forget(conn.id);
        const now = this.#now();
        this.#enqueue(() => ({ type: 'closed', now, conn: conn.id }));
      },
    };
  }

  goodbye(conn: Connection): void {
    conn.close(CloseCodes.SHUTTING_DOWN, 'MASTER is shutting down');
  }

  summary(): Record<string, unknown> {
    const s = this.#state;
    let owned = 0;
    let connected = 0;
    for (const sh of s.shards) {
      if (sh.owner !== null) owned++;
      if (sh.owner !== null && sh.work === 'connected') connected++;
    }
    return {
      connections: this.#conns.size,
      controls: s.controls.size,
      liveControls: [...s.controls.values()].filter((c) => c.conn !== null).length,
      shards: s.shards.length,
      ownedShards: owned,
      connectedShards: connected,
      identifyQueue: s.queue.waiting.length,
      timers: this.#timers.size,
      phase: s.phase,
      halted: s.phase === 'halted',
      budgetRemaining: budgetRemaining(s.queue, this.#now(), queueConfig(this.#cfg)),
    };
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    const next: { authorization?: string; botToken?: string } = {};
    if (typeof secrets.authorization === 'string') next.authorization = secrets.authorization;
    if (typeof secrets.botToken === 'string') next.botToken = secrets.botToken;
    this.#cfg = { ...this.#cfg, ...next };
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const t of this.#timers.values()) t.cancel();
    this.#timers.clear();
    await Promise.all([...this.#unsaved]);
    await this.#outbox;
  }

  routes(): HttpRoute[] {
    const rangeSchema = { type: 'array', items: { type: 'integer' }, minItems: 2, maxItems: 2 };
    const rangesSchema = { type: 'array', items: rangeSchema };
    const controlSchema = {
      type: 'object',
      properties: {
        name: { type: 'string' },
        sessionId: { type: 'string' },
        state: { type: 'string', enum: CONTROL_STATES },
        shards: rangesSchema,
        redundant: { type: 'boolean' },
        capacity: { type: 'number' },
        lastHeartbeatMs: { type: ['integer', 'null'], description: 'Epoch ms of the last HEARTBEAT' },
      },
    };
    const adminReply = { type: 'object' };
    return [
      {
        method: 'GET',
        url: '/api/v1/sharding',
        access: 'admin',
        summary: 'The fleet: halt state, shard count, identify budget, and every CONTROL',
        response: {
          type: 'object',
          properties: {
            halted: { type: 'boolean' },
            shardCount: { type: 'integer' },
            maxConcurrency: { type: 'integer' },
            budgetRemaining: { type: 'integer' },
            controls: { type: 'array', items: controlSchema },
          },
        },
        handler: async () => {
          await this.#ready;
          return { body: fleetView(this.#state, this.#cfg, this.#now()) };
        },
      },
      {
        method: 'GET',
        url: '/api/v1/sharding/shards',
        access: 'admin',
        summary: 'Every shard with its owner and state',
        response: {
          type: 'array',
          items: { type: 'object', properties: { id: { type: 'integer' }, owner: { type: ['string', 'null'] }, state: { type: 'string', enum: SHARD_STATES } } },
        },
        handler: async () => {
          await this.#ready;
          return { body: shardsView(this.#state) };
        },
      },
      {
        method: 'GET',
        url: '/api/v1/sharding/controls/:name',
        access: 'admin',
        summary: 'One CONTROL, with its last INFO telemetry',
        response: controlSchema,
        handler: async (req) => {
          await this.#ready;
          const rec = this.#state.controls.get(req.params.name ?? '');
          if (!rec) return { status: 404, body: { error: 'NOT_FOUND', message: `no CONTROL named "${req.params.name ?? ''}"` } };
          const view = JSON.stringify({ ...controlView(this.#state, rec), infoAt: rec.infoAt, connected: rec.conn !== null });
          // INFO is spliced in as it came, so numbers beyond 2^53 keep their digits.
          const body = `${view.slice(0, -1)},"info":${rec.info ?? 'null'}}`;
          return { body, headers: { 'content-type': 'application/json; charset=utf-8' } };
        },
      },
      {
        method: 'POST',
        url: '/api/v1/sharding/halt',
        access: 'admin',
        summary: 'Halt the fleet: SHUTDOWN to every CONTROL, nothing starts until resume',
        response: adminReply,
        handler: () => this.#admin({ kind: 'halt' }),
      },
      {
        method: 'POST',
        url: '/api/v1/sharding/resume',
        access: 'admin',
        summary: 'Resume a halted fleet (start-up follows)',
        response: adminReply,
        handler: () => this.#admin({ kind: 'resume' }),
      },
      {
        method: 'POST',
        url: '/api/v1/sharding/rebalance',
        access: 'admin',
        summary: 'Make-before-break rebalance: empty body for a capacity-weighted plan, or {to, shards}',
        response: adminReply,
        handler: (req) => this.#admin({ kind: 'rebalance', body: req.body }),
      },
      {
        method: 'POST',
        url: '/api/v1/sharding/controls/:name/command',
        access: 'admin',
        summary: 'Relay a COMMAND (restart_shard {shard_id}, restart_cluster {shards}) to a CONTROL',
        response: adminReply,
        handler: (req) => this.#admin({ kind: 'command', name: req.params.name ?? '', body: req.body }),
      },
    ];
  }

  async #admin(action: AdminAction): Promise<HttpReply> {
    await this.#ready;
    if (this.#stopped) return { status: 503, body: { error: 'SHUTTING_DOWN', message: 'the server is shutting down' } };
    const before = this.#state.phase;
    const effects = this.#feed({ type: 'admin', now: this.#now(), action });
    if (action.kind === 'halt' && before !== 'halted') this.#m.fatal.inc();
    const reply = effects.find((e): e is Extract<Effect, { type: 'reply' }> => e.type === 'reply');
    // The answer says the change happened (halt, resume, rebalance): only once it is durable.
    const saved = (await Promise.all([...this.#unsaved])).every(Boolean);
    if (!saved && reply && reply.status < 300) {
      return { status: 500, body: { error: 'STORE_UNAVAILABLE', message: 'the change is in effect but could not be saved' } };
    }
    return reply ? { status: reply.status, body: reply.body } : { status: 500, body: { error: 'INTERNAL', message: 'no reply' } };
  }

  // ---- feeding the machine, running its effects ----

  #enqueue(ev: () => FleetEvent): void {
    if (this.#loaded) this.#feed(ev());
    else this.#backlog.push(ev);
  }

  #feed(ev: FleetEvent): readonly Effect[] {
    const before = this.#state.phase;
    const debug = 'conn' in ev && this.#ctx.logger.isLevelEnabled('debug');
    const was = debug ? socketPhase(this.#state, ev.conn) : '';
    const { state, effects } = step(this.#state, ev, this.#cfg);
    this.#state = state;
    if (debug) this.#conns.get(ev.conn)?.stateChanged(was, socketPhase(state, ev.conn));
    if (before !== state.phase) this.#ctx.logger.debug({ from: before, to: state.phase }, 'sharding: fleet phase');
    if (ev.type === 'message' && ev.frame.o === Op.FATAL && before !== 'halted' && state.phase === 'halted') this.#m.fatal.inc();
    if (ev.type === 'message' && ev.frame.o === Op.IDENTIFY) {
      // The admin API's connection list shows the CONTROL's name.
      const name = state.sockets.get(ev.conn)?.control;
      const conn = this.#conns.get(ev.conn);
      if (conn && name) conn.identity = name;
      // Most deployments run no shard fleet: the missing bot token matters only once a CONTROL shows up.
      if (name && this.#cfg.botToken === '' && !this.#warnedBotToken) {
        this.#warnedBotToken = true;
        this.#ctx.logger.warn({ control: name }, 'sharding: a CONTROL identified but dialects.sharding.botToken is not set; INITIALISE carries an empty token');
      }
    }
    // Writes first: what the frames below announce (a grant spends budget, an assignment
    // moves shards) is in the store before they go out (see #deliver).
    for (const e of effects) if (e.type === 'persist') this.#run(e);
    for (const e of effects) if (e.type !== 'persist') this.#run(e);
    return effects;
  }

  #run(e: Effect): void {
    switch (e.type) {
      case 'send':
      case 'close':
        this.#deliver(e);
        return;
      case 'timer': {
        const id = timerId(e.key);
        this.#timers.get(id)?.cancel();
        this.#timers.delete(id);
        if (e.at === null || this.#stopped) return;
        const key = e.key;
        const t = this.#ctx.scheduler.after(e.at - this.#now(), () => {
          if (this.#timers.get(id) !== t) return;
          this.#timers.delete(id);
          this.#feed({ type: 'timer', now: this.#now(), key });
        });
        this.#timers.set(id, t);
        return;
      }
      case 'persist':
        this.#persist(e.key, e.value);
        return;
      case 'failover':
        this.#m.failover.observe(e.seconds);
        return;
      case 'grant':
        this.#m.grants.inc();
        return;
      case 'log': {
        // Lines a peer can cause at will are capped per peer (PEER_LOG_RATE).
        const held = e.peer === undefined ? 0 : this.#peerLog.allow(e.peer);
        if (held === undefined) return;
        this.#ctx.logger[e.level](held > 0 ? { ...e.data, suppressed: held } : (e.data ?? {}), e.msg);
        return;
      }
      case 'reply':
        return;
    }
  }

  /**
   * Writes at once (the store applies writes in call order); frames and closes from now
   * on wait until it is durable. A failed write is logged, and what waited on it goes
   * out anyway: the fleet keeps running on what it has in memory.
   */
  #persist(key: PersistKey, value: unknown): void {
    if (this.#stopped) return;
    const write = this.#ctx.store.set(STORE_NS, key, value as never).then(
      () => true,
      (err: unknown) => {
        this.#ctx.logger.error({ err, key }, 'sharding: could not persist');
        return false;
      },
    );
    this.#unsaved.add(write);
    void write.then(() => this.#unsaved.delete(write));
  }

  /** Sends or closes now, or, while writes are unsettled, after them and in order. */
  #deliver(e: Extract<Effect, { type: 'send' | 'close' }>): void {
    const go = (): void => {
      const c = this.#conns.get(e.conn);
      if (e.type === 'send') c?.send(e.frame);
      else c?.close(e.code, e.reason);
    };
    if (this.#unsaved.size === 0 && this.#held === 0) return go();
    this.#held++;
    this.#outbox = Promise.all([this.#outbox, ...this.#unsaved])
      .then(() => {
        this.#held--;
        go();
      })
      .catch((err: unknown) => this.#ctx.logger.error({ err, conn: e.conn }, 'sharding: could not deliver a held frame'));
  }
}

/** A socket's phase for the debug log: its CONTROL's state once it has identified. */
function socketPhase(state: FleetState, conn: string): string {
  const sock = state.sockets.get(conn);
  if (!sock) return 'closed';
  const rec = sock.control !== null ? state.controls.get(sock.control) : undefined;
  return rec ? controlState(state, rec) : 'initialised';
}
