import type { IncomingMessage } from 'node:http';
import { Counter, Gauge, Histogram } from 'prom-client';
import { SoloLeadership, type Leadership } from '../../cluster/leadership.js';
import { SHARDING_LIMITS } from '../../config/dialects/sharding.js';
import type { Connection } from '../../core/connection.js';
import type { ConnectionHandler, Dialect, DialectContext, HttpReply, HttpRoute, UpgradeVerdict } from '../../core/dialect.js';
import { assertNever } from '../../core/runtime.js';
import { CloseCodes, Op, shardingCloseCodes } from '../../protocols/sharding/messages.js';
import { CommandBody, commandBadBody, commandRefine, REBALANCE_BAD_BODY, RebalanceBody, rebalanceRefine } from '../../protocols/sharding/admin.js';
import {
  controlState,
  controlView,
  fleetView,
  queueConfig,
  shardState,
  shardsView,
  type AdminAction,
  type ControlState,
  type FleetEvent,
  type FleetState,
  type MachineConfig,
  type ShardState,
} from './machine.js';
import { budgetRemaining } from './identify-queue.js';
import { ShardingEdge } from './edge.js';
import { NOT_LEADER, ShardingLeader, type ShardingEffect } from './leader.js';

export { STORE_NS } from './leader.js';

/**
 * The sharding dialect: an edge (edge.ts: this instance's CONTROL sockets) and a leader
 * (leader.ts: the orchestrator, machine.ts on the core runtime, while this instance holds
 * the leadership), talking over Broker topics (link.ts). In one process the leadership is
 * `SoloLeadership` and the broker the LocalBroker: one term from the start, every message
 * synchronous, nothing different on the wire. This file adds the metrics, the admin
 * routes and the upgrade check.
 */
export interface ShardingDialectConfig extends MachineConfig {
  readonly path: string;
  readonly authorization: string;
}

export interface ShardingDialectDeps {
  secretEquals: (a: string, b: string) => boolean;
  /**
   * Cluster mode: who leads (the Redis lease), and this instance's id for the topics the
   * leader's orders come back on (default: the broker's instanceId). Absent: one process,
   * always the leader.
   */
  cluster?: { readonly leadership: Leadership; readonly instanceId?: string };
}

const SHARD_STATES: readonly ShardState[] = ['unassigned', 'pending', 'assigned', 'connecting', 'connected', 'disconnected', 'halted'];
const CONTROL_STATES: readonly ControlState[] = ['waiting', 'connecting', 'ready', 'standby', 'disconnected'];

export class ShardingDialect implements Dialect {
  readonly name = 'sharding';
  readonly path: string;
  readonly closeCodes = shardingCloseCodes;
  readonly maxBufferedBytes = SHARDING_LIMITS.maxBufferedBytes;

  #cfg: ShardingDialectConfig;
  readonly #ctx: DialectContext;
  readonly #deps: ShardingDialectDeps;
  readonly #edge: ShardingEdge;
  readonly #leader: ShardingLeader;
  #warnedBotToken = false;
  readonly #m: { grants: Counter; failover: Histogram; fatal: Counter };

  constructor(cfg: ShardingDialectConfig, ctx: DialectContext, deps: ShardingDialectDeps) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.#deps = deps;
    this.path = cfg.path;
    const registers = [ctx.registry];
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
    const leadership = deps.cluster?.leadership ?? new SoloLeadership();
    this.#edge = new ShardingEdge({
      broker: ctx.broker,
      instanceId: deps.cluster?.instanceId ?? ctx.broker.instanceId,
      logger: ctx.logger,
      shardCount: () => this.#cfg.shardCount,
    });
    this.#leader = new ShardingLeader({
      config: () => this.#cfg,
      ctx,
      leadership,
      observe: (before, after, ev) => this.#observe(before, after, ev),
      effect: (e) => this.#effect(e),
    });
    const read = (): FleetState => this.#leader.state;
    const config = (): ShardingDialectConfig => this.#cfg;
    const leading = (): boolean => this.#leader.isLeader;
    new Gauge({
      name: 'muster_sharding_leader',
      help: '1 while this instance runs the sharding orchestrator (always, in one process)',
      registers,
      collect() {
        this.set(leading() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'muster_sharding_shards',
      help: 'Shards by state',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<string, number>(SHARD_STATES.map((s) => [s, 0]));
        const st = read();
        if (leading()) {
          st.shards.forEach((_, id) => {
            const k = shardState(st, id);
            counts.set(k, (counts.get(k) ?? 0) + 1);
          });
        }
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
        // Only the leader counts (a sum over instances is the fleet's).
        this.set(leading() ? budgetRemaining(read().queue, ctx.scheduler.now(), queueConfig(config())) : 0);
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
  }

  /** The orchestrator's state (read-only; for tests and the admin views); an idle fleet while another instance leads. */
  get state(): FleetState {
    return this.#leader.state;
  }

  /** Resolves once the stored assignment, halt state and budget are loaded (at once while another instance leads). */
  get ready(): Promise<void> {
    return this.#leader.ready;
  }

  /** Whether this instance runs the orchestrator now. */
  get isLeader(): boolean {
    return this.#leader.isLeader;
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
    return this.#edge.accept(conn);
  }

  goodbye(conn: Connection): void {
    conn.close(CloseCodes.SHUTTING_DOWN, 'MASTER is shutting down');
  }

  summary(): Record<string, unknown> {
    const s = this.#leader.state;
    let owned = 0;
    let connected = 0;
    for (const sh of s.shards) {
      if (sh.owner !== null) owned++;
      if (sh.owner !== null && sh.work === 'connected') connected++;
    }
    return {
      leader: this.#leader.isLeader,
      connections: this.#edge.size,
      controls: s.controls.size,
      liveControls: [...s.controls.values()].filter((c) => c.conn !== null).length,
      shards: s.shards.length,
      ownedShards: owned,
      connectedShards: connected,
      identifyQueue: s.queue.waiting.length,
      timers: this.#leader.timerCount,
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
    this.#edge.stop();
    await this.#leader.stop();
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
          await this.#leader.ready;
          if (!this.#leader.isLeader) return NOT_LEADER;
          return { body: fleetView(this.#leader.state, this.#cfg, this.#now()) };
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
          await this.#leader.ready;
          if (!this.#leader.isLeader) return NOT_LEADER;
          return { body: shardsView(this.#leader.state) };
        },
      },
      {
        method: 'GET',
        url: '/api/v1/sharding/controls/:name',
        access: 'admin',
        summary: 'One CONTROL, with its last INFO telemetry',
        response: controlSchema,
        handler: async (req) => {
          await this.#leader.ready;
          if (!this.#leader.isLeader) return NOT_LEADER;
          const rec = this.#leader.state.controls.get(req.params.name ?? '');
          if (!rec) return { status: 404, body: { error: 'NOT_FOUND', message: `no CONTROL named "${req.params.name ?? ''}"` } };
          const view = JSON.stringify({ ...controlView(this.#leader.state, rec), infoAt: rec.infoAt, connected: rec.conn !== null });
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
    await this.#leader.ready;
    const before = this.#leader.state.phase;
    const counts = this.#leader.isLeader && !this.#leader.stopped;
    // Fed synchronously; the answer waits until the change is durable.
    const answer = this.#leader.admin(action);
    if (counts && action.kind === 'halt' && before !== 'halted') this.#m.fatal.inc();
    return answer;
  }

  /** After every step of the leader: debug lines, the halt metric, the bot-token warning. */
  #observe(prev: FleetState, state: FleetState, ev: FleetEvent): void {
    const before = prev.phase;
    if (before !== state.phase) this.#ctx.logger.debug({ from: before, to: state.phase }, 'sharding: fleet phase');
    if (ev.type === 'message' && ev.frame.o === Op.FATAL && before !== 'halted' && state.phase === 'halted') this.#m.fatal.inc();
    if (ev.type === 'message' && ev.frame.o === Op.IDENTIFY) {
      const name = state.sockets.get(ev.conn)?.control;
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
