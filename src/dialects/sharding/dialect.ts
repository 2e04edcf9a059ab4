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
  queueConfig,
  shardState,
  type ControlState,
  type FleetEvent,
  type FleetState,
  type MachineConfig,
  type ShardState,
} from './machine.js';
import { budgetRemaining } from './identify-queue.js';
import { ShardingEdge } from './edge.js';
import { ShardingLeader, type ShardingEffect } from './leader.js';
import { Asker, viewReply } from './ask.js';
import type { AdminQuery } from './link.js';

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
  readonly #asker: Asker;
  #stopped = false;
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
    const instanceId = deps.cluster?.instanceId ?? ctx.broker.instanceId;
    this.#asker = new Asker(ctx.broker, instanceId, ctx.scheduler);
    this.#edge = new ShardingEdge({
      broker: ctx.broker,
      instanceId,
      logger: ctx.logger,
      shardCount: () => this.#cfg.shardCount,
      onAnswer: (id, reply) => this.#asker.answer(id, reply),
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
    this.#stopped = true;
    this.#asker.stop();
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
        handler: () => this.#ask({ view: 'fleet' }),
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
        handler: () => this.#ask({ view: 'shards' }),
      },
      {
        method: 'GET',
        url: '/api/v1/sharding/controls/:name',
        access: 'admin',
        summary: 'One CONTROL, with its last INFO telemetry',
        response: controlSchema,
        handler: (req) => this.#ask({ view: 'control', name: req.params.name ?? '' }),
      },
      {
        method: 'POST',
        url: '/api/v1/sharding/halt',
        access: 'admin',
        summary: 'Halt the fleet: SHUTDOWN to every CONTROL, nothing starts until resume',
        response: adminReply,
        handler: () => this.#ask({ action: { kind: 'halt' } }),
      },
      {
        method: 'POST',
        url: '/api/v1/sharding/resume',
        access: 'admin',
        summary: 'Resume a halted fleet (start-up follows)',
        response: adminReply,
        handler: () => this.#ask({ action: { kind: 'resume' } }),
      },
      {
        method: 'POST',
        url: '/api/v1/sharding/rebalance',
        access: 'admin',
        summary: 'Make-before-break rebalance: empty body for a capacity-weighted plan, or {to, shards}',
        response: adminReply,
        body: { schema: RebalanceBody, optional: true, refine: rebalanceRefine, message: () => REBALANCE_BAD_BODY },
        handler: (req) => this.#ask({ action: { kind: 'rebalance', body: req.body as RebalanceBody | undefined } }),
      },
      {
        method: 'POST',
        url: '/api/v1/sharding/controls/:name/command',
        access: 'admin',
        summary: 'Relay a COMMAND (restart_shard {shard_id}, restart_cluster {shards}) to a CONTROL',
        response: adminReply,
        body: { schema: CommandBody, refine: commandRefine, message: (body) => commandBadBody(body, this.#cfg.shardCount) },
        handler: (req) => this.#ask({ action: { kind: 'command', name: req.params.name ?? '', body: req.body as CommandBody } }),
      },
    ];
  }

  /**
   * An admin route: answered here while this instance leads (once the stored state is
   * loaded; an action's answer waits until its change is durable), otherwise asked of the
   * leader over the Broker (ask.ts).
   */
  async #ask(q: AdminQuery): Promise<HttpReply> {
    if (!this.#leader.isLeader && !this.#stopped) return this.#asker.ask(q);
    await this.#leader.ready;
    if ('action' in q) return this.#leader.admin(q.action);
    return viewReply(this.#leader.state, this.#cfg, this.#now(), q);
  }

  /** After every step of the leader: debug lines, the halt metric, the bot-token warning. */
  #observe(prev: FleetState, state: FleetState, ev: FleetEvent): void {
    const before = prev.phase;
    if (before !== state.phase) this.#ctx.logger.debug({ from: before, to: state.phase }, 'sharding: fleet phase');
    // A halt, by FATAL or by an operator, on whichever instance the operator asked.
    if (before !== 'halted' && state.phase === 'halted' && ev.type !== 'loaded') this.#m.fatal.inc();
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
