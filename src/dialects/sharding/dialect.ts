import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge, Histogram } from 'prom-client';
import { SHARDING_LIMITS } from '../../config/dialects/sharding.js';
import type { Connection } from '../../core/connection.js';
import type { ConnectionHandler, Dialect, DialectContext, HttpReply, HttpRoute, UpgradeVerdict } from '../../core/dialect.js';
import { assertNever, DialectRuntime, timerEvent, type World } from '../../core/runtime.js';
import { CloseCodes, decodeControlFrame, Op, shardingCloseCodes } from '../../protocols/sharding/messages.js';
import { CommandBody, commandBadBody, commandRefine, REBALANCE_BAD_BODY, RebalanceBody, rebalanceRefine } from '../../protocols/sharding/admin.js';
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
  type ShardState,
  type TimerKey,
} from './machine.js';
import { budgetRemaining } from './identify-queue.js';
import { httpError } from '../../core/errors.js';

/**
 * The sharding dialect's glue on the core runtime (core/runtime.ts): the runtime feeds
 * the orchestrator (machine.ts) socket events, deadlines, admin calls and the store
 * load, and carries out its effects (writes before the frames that announce them);
 * this file adds the metrics, the admin routes and the upgrade check.
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

/** Log lines one CONTROL socket can cause at will (ERROR frames): 5 at once, then 1 a second. */
const PEER_LOG_RATE = { perSecond: 1, burst: 5 };

/** The machine's own effects (beside the core ones): metrics. */
type ShardingEffect = Extract<Effect, { type: 'failover' | 'grant' }>;

export class ShardingDialect implements Dialect {
  readonly name = 'sharding';
  readonly path: string;
  readonly closeCodes = shardingCloseCodes;
  readonly maxBufferedBytes = SHARDING_LIMITS.maxBufferedBytes;

  #cfg: ShardingDialectConfig;
  readonly #ctx: DialectContext;
  readonly #deps: ShardingDialectDeps;
  readonly #rt: DialectRuntime<FleetState, FleetEvent, TimerKey, ShardingEffect>;
  /** Live sockets by id (for the CONTROL name the admin API shows and debug phase lines). */
  readonly #conns = new Map<string, Connection>();
  #warnedBotToken = false;
  readonly #ready: Promise<void>;
  readonly #m: { grants: Counter; failover: Histogram; fatal: Counter };

  constructor(cfg: ShardingDialectConfig, ctx: DialectContext, deps: ShardingDialectDeps) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#deps = deps;
    this.path = cfg.path;
    const world: World<FleetState, FleetEvent, TimerKey, ShardingEffect> = {
      step: (state, ev) => step(state, ev, this.#cfg),
      timerEvent,
      timerId,
      effect: (e) => this.#effect(e),
    };
    this.#rt = new DialectRuntime({
      name: 'sharding',
      world,
      initial: initialState(cfg, ctx.scheduler.now()),
      scheduler: ctx.scheduler,
      logger: ctx.logger,
      store: { store: ctx.store, namespace: STORE_NS },
      peerLogRate: PEER_LOG_RATE,
      held: true,
      peek: (state, ev) => ('conn' in ev && ctx.logger.isLevelEnabled('debug') ? socketPhase(state, ev.conn) : undefined),
      observe: (before, after, ev, _fx, was) => this.#observe(before, after, ev, was),
    });
    const registers = [ctx.registry];
    const read = (): FleetState => this.#rt.state;
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
    return this.#rt.state;
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
    this.#rt.start({ type: 'loaded', now: this.#now(), fleet, assignment, budget });
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
    this.#rt.attach(conn);
    const sessionId = randomUUID();
    this.#rt.enqueue(() => ({ type: 'open', now: this.#now(), conn: conn.id, sessionId }));
    return {
      onMessage: (data, binary) => {
        const detail = binary ? 'binary frames are not accepted; send JSON text' : undefined;
        const now = this.#now();
        if (detail !== undefined) return this.#rt.enqueue(() => ({ type: 'malformed', now, conn: conn.id, detail }));
        const res = decodeControlFrame(data.toString('utf8'));
        this.#rt.enqueue(() => (res.ok ? { type: 'message', now, conn: conn.id, frame: res.frame } : { type: 'malformed', now, conn: conn.id, detail: res.detail }));
        // A WebSocket ping beside each HEARTBEAT's ACK: its pong gives the CONTROL's round trip (conn.latencyMs).
        if (res.ok && res.frame.o === Op.HEARTBEAT) conn.ping();
      },
      onClose: () => {
        this.#conns.delete(conn.id);
        this.#rt.detach(conn.id);
        const now = this.#now();
        this.#rt.enqueue(() => ({ type: 'closed', now, conn: conn.id }));
      },
    };
  }

  goodbye(conn: Connection): void {
    conn.close(CloseCodes.SHUTTING_DOWN, 'MASTER is shutting down');
  }

  summary(): Record<string, unknown> {
    const s = this.#rt.state;
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
      timers: this.#rt.timerCount,
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
    await this.#rt.stop();
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
          return { body: fleetView(this.#rt.state, this.#cfg, this.#now()) };
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
          return { body: shardsView(this.#rt.state) };
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
          const rec = this.#rt.state.controls.get(req.params.name ?? '');
          if (!rec) return httpError('NOT_FOUND', `no CONTROL named "${req.params.name ?? ''}"`);
          const view = JSON.stringify({ ...controlView(this.#rt.state, rec), infoAt: rec.infoAt, connected: rec.conn !== null });
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
        body: { schema: RebalanceBody, optional: true, refine: rebalanceRefine, message: () => REBALANCE_BAD_BODY },
        handler: (req) => this.#admin({ kind: 'rebalance', body: req.body as RebalanceBody | undefined }),
      },
      {
        method: 'POST',
        url: '/api/v1/sharding/controls/:name/command',
        access: 'admin',
        summary: 'Relay a COMMAND (restart_shard {shard_id}, restart_cluster {shards}) to a CONTROL',
        response: adminReply,
        body: { schema: CommandBody, refine: commandRefine, message: (body) => commandBadBody(body, this.#cfg.shardCount) },
        handler: (req) => this.#admin({ kind: 'command', name: req.params.name ?? '', body: req.body as CommandBody }),
      },
    ];
  }

  async #admin(action: AdminAction): Promise<HttpReply> {
    await this.#ready;
    const before = this.#rt.state.phase;
    const stopped = this.#rt.stopped;
    // Fed synchronously; the answer waits until the change is durable.
    const answer = this.#rt.admin({ type: 'admin', now: this.#now(), action });
    if (!stopped && action.kind === 'halt' && before !== 'halted') this.#m.fatal.inc();
    return answer;
  }

  /** After every step: debug lines, the halt metric, the CONTROL's name on its connection. */
  #observe(prev: FleetState, state: FleetState, ev: FleetEvent, was: unknown): void {
    const before = prev.phase;
    if (typeof was === 'string' && 'conn' in ev) this.#conns.get(ev.conn)?.stateChanged(was, socketPhase(state, ev.conn));
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
  }

  /** The machine's own effects: metrics. */
  #effect(e: ShardingEffect): void {
    switch (e.type) {
      case 'failover':
        this.#m.failover.observe(e.seconds);
        return;
      case 'grant':
        this.#m.grants.inc();
        return;
      default:
        assertNever(e, 'sharding effect');
    }
  }
}

/** A socket's phase for the debug log: its CONTROL's state once it has identified. */
function socketPhase(state: FleetState, conn: string): string {
  const sock = state.sockets.get(conn);
  if (!sock) return 'closed';
  const rec = sock.control !== null ? state.controls.get(sock.control) : undefined;
  return rec ? controlState(state, rec) : 'initialised';
}
