import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge } from 'prom-client';
import { DISCODO_LIMITS } from '../../config/dialects/discodo.js';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpRoute } from '../../core/dialect.js';
import { CloseCode, httpError } from '../../common/errors.js';
import { assertNever, DialectRuntime, timerEvent } from '../../core/runtime.js';
import { discodoCloseCodes, CloseCodes, encode, snowflakeKey, type ResumedForm, type Snowflake } from '../../protocols/discodo/messages.js';
import { VERSION } from '../../version.js';
import { noopVoiceBackend, type VoiceBackend } from './backend.js';
import { gatherRows, instanceHeaders } from '../../cluster/admin-view.js';
import { ClusterLink } from '../../cluster/link.js';
import { LINK, type ClusterMsg } from './cluster-wire.js';
import { nodeStatusProvider, type NodeStatus } from './status.js';
import { initialWorld, step, timerId, worldSummary, type DiscodoEffect, type DiscodoWorld, type SessionRec, type TimerKey, type WorldConfig, type WorldEvent } from './world.js';

/**
 * The discodo dialect's glue on the core runtime: the runtime feeds the pure world
 * (world.ts: sockets, sessions, resume, voice clients) and runs its effects; this file
 * checks the password at the upgrade, counts metrics, calls the voice backend and
 * serves the admin views. In cluster mode it carries the world's messages to the other
 * instances on Broker topics (world-cluster.ts: a session follows its bot's socket).
 */
export interface DiscodoDialectConfig {
  path: string;
  password: string;
  /** ms; HELLO carries it in seconds. */
  heartbeatInterval: number;
  /** ms a closed socket's session and voice clients are kept for a resume. */
  vcTimeout: number;
  /** ms of silence (no frame at all) before the socket is closed with 4000. */
  handshakeTimeout: number;
  compat: ResumedForm;
  /** ms a session claim waits for another instance that does not answer (cluster mode; default 2000). */
  claimTimeout?: number;
  /** Unsent bytes per connection before it is cut as a slow consumer (default 4 MiB). */
  maxBufferedBytes?: number;
}

export interface DiscodoDialectDeps {
  secretEquals: (a: string, b: string) => boolean;
  /** Where a media plane attaches (default: none). */
  backend?: VoiceBackend;
  /** Voice client ids (default: random UUIDs). */
  newId?: () => string;
  /** Load and memory for STATUS (default: this process and host). */
  status?: () => NodeStatus;
}

export const DEFAULT_MAX_BUFFERED_BYTES = DISCODO_LIMITS.maxBufferedBytes;

/** The gather question (cluster mode) for one instance's admin views of its sessions: all (null) or one key. */
export const SESSIONS_KIND = 'discodo.sessions';

/** A session as the admin API shows it. */
type View = Record<string, unknown> & { readonly key: string };

export class DiscodoDialect implements Dialect {
  readonly name = 'discodo';
  readonly path: string;
  readonly closeCodes = discodoCloseCodes;
  readonly maxBufferedBytes: number;
  /**
   * The password is checked when the socket opens and a socket without it reads no
   * frame; this cap only keeps the socket layer from buffering big frames for it
   * while it is being closed.
   */
  readonly preAuthMaxBytes = DEFAULT_PRE_AUTH_MAX_BYTES;

  #cfg: DiscodoDialectConfig;
  readonly #ctx: DialectContext;
  readonly #secretEquals: (a: string, b: string) => boolean;
  readonly #backend: VoiceBackend;
  readonly #newId: () => string;
  readonly #status: () => NodeStatus;
  /** Live sockets by id (the world names them; the admin views show their address). */
  readonly #conns = new Map<string, Connection>();
  readonly #rt: DialectRuntime<DiscodoWorld, WorldEvent, TimerKey, DiscodoEffect>;
  /** Undoes the topic subscriptions, the peer listener and the admin list answerer. */
  readonly #link: ClusterLink<ClusterMsg>;
  readonly #unhook: Array<() => void> = [];
  readonly #m: {
    resumes: Counter<'kind'>;
    handoffs: Counter<'direction'>;
    expiries: Counter;
    forbidden: Counter;
    vcCreated: Counter;
    vcDestroyed: Counter<'reason'>;
  };

  constructor(cfg: DiscodoDialectConfig, ctx: DialectContext, deps: DiscodoDialectDeps) {
    this.#cfg = cfg;
    this.#ctx = ctx;
    this.path = cfg.path;
    this.maxBufferedBytes = cfg.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES;
    this.#secretEquals = deps.secretEquals;
    this.#backend = deps.backend ?? noopVoiceBackend;
    this.#newId = deps.newId ?? randomUUID;
    this.#status = deps.status ?? nodeStatusProvider();
    const world: WorldConfig = {
      heartbeatInterval: cfg.heartbeatInterval,
      handshakeTimeout: cfg.handshakeTimeout,
      version: `muster-${VERSION}`,
      vcTimeout: cfg.vcTimeout,
      compat: cfg.compat,
      newId: this.#newId,
      ...(cfg.claimTimeout !== undefined ? { claimTimeout: cfg.claimTimeout } : {}),
    };
    if (cfg.heartbeatInterval >= cfg.handshakeTimeout) {
      ctx.logger.warn(
        { heartbeatInterval: cfg.heartbeatInterval, handshakeTimeout: cfg.handshakeTimeout },
        'discodo: heartbeatInterval is not below handshakeTimeout; clients that heartbeat on HELLO\'s interval will be closed with 4000',
      );
    }
    this.#rt = new DialectRuntime({
      name: 'discodo',
      world: {
        step: (state, ev) => step(state, ev, world),
        timerEvent,
        timerId,
        effect: (e) => this.#effect(e),
      },
      initial: initialWorld(),
      scheduler: ctx.scheduler,
      logger: ctx.logger,
      // A socket's phase before the step, for its debug line.
      peek: (state, ev) => ('conn' in ev ? state.peers.get(ev.conn)?.conn.phase : undefined),
      observe: (_before, after, ev, _fx, was) => {
        if ('conn' in ev && typeof was === 'string') this.#conns.get(ev.conn)?.stateChanged(was, after.peers.get(ev.conn)?.conn.phase ?? 'closed');
      },
    });

    const link = new ClusterLink(ctx.broker, LINK, {
      remote: (from, msg) => this.#rt.feed({ type: 'remote', now: ctx.scheduler.now(), from, msg }),
      peer: (instance, up) => this.#rt.feed({ type: 'peer', now: ctx.scheduler.now(), instance, up }),
    });
    this.#link = link;
    this.#unhook.push(
      () => link.stop(),
      // The admin views of every instance (cluster mode): each instance answers with its own.
      ctx.broker.answer(SESSIONS_KIND, (q) => this.#localViews(typeof q === 'string' ? q : null)),
    );

    const registers = [ctx.registry];
    this.#m = {
      handoffs: new Counter({ name: 'muster_discodo_handoffs_total', help: 'Sessions moved between instances (cluster mode), by direction (out: to another instance; in: from one)', labelNames: ['direction'], registers }),
      resumes: new Counter({ name: 'muster_discodo_resumes_total', help: 'Sessions resumed by an IDENTIFY with the same key, by kind (detached: within vcTimeout; takeover: from a live socket)', labelNames: ['kind'], registers }),
      expiries: new Counter({ name: 'muster_discodo_session_expiries_total', help: 'Detached sessions released after vcTimeout', registers }),
      forbidden: new Counter({ name: 'muster_discodo_forbidden_total', help: 'Sockets refused with FORBIDDEN (wrong or missing password)', registers }),
      vcCreated: new Counter({ name: 'muster_discodo_voice_clients_created_total', help: 'Voice clients created', registers }),
      vcDestroyed: new Counter({ name: 'muster_discodo_voice_clients_destroyed_total', help: 'Voice clients destroyed, by reason', labelNames: ['reason'], registers }),
    };
    const counts = (): ReturnType<DiscodoDialect['summary']> => this.summary();
    new Gauge({
      name: 'muster_discodo_sessions',
      help: 'Discodo sessions, by state (live: a socket is attached; detached: waiting for a resume)',
      labelNames: ['state'],
      registers,
      collect() {
        const s = counts();
        this.set({ state: 'live' }, s.liveSessions);
        this.set({ state: 'detached' }, s.detachedSessions);
      },
    });
    new Gauge({
      name: 'muster_discodo_voice_clients',
      help: 'Voice clients held, live and detached sessions together',
      registers,
      collect() {
        this.set(counts().voiceClients);
      },
    });
  }

  /** Live counts, for leak checks and `muster status`. */
  summary(): { connections: number; sessions: number; liveSessions: number; detachedSessions: number; voiceClients: number; pendingVoice: number } {
    return worldSummary(this.#rt.state);
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    if (typeof secrets.password === 'string') this.#cfg = { ...this.#cfg, password: secrets.password };
  }

  accept(conn: Connection, req: IncomingMessage): ConnectionHandler {
    const id = conn.id;
    this.#conns.set(id, conn);
    this.#rt.attach(conn);
    conn.onSlowConsumer = (c) => c.close(CloseCodes.SLOW_CONSUMER, 'slow consumer');
    const forbidden = this.#checkPassword(req.headers.authorization);
    if (forbidden !== undefined) this.#m.forbidden.inc();
    else conn.markAuthenticated();
    this.#rt.feed({ type: 'open', now: this.#ctx.scheduler.now(), conn: id, forbidden });
    return {
      onMessage: (data, binary) => this.#rt.feed({ type: 'frame', now: this.#ctx.scheduler.now(), conn: id, data, binary }),
      onClose: () => {
        this.#conns.delete(id);
        this.#rt.detach(id);
        this.#rt.feed({ type: 'closed', now: this.#ctx.scheduler.now(), conn: id });
      },
    };
  }

  kick(conn: Connection): void {
    conn.close(CloseCode.POLICY_VIOLATION, 'kicked by an operator');
  }

  goodbye(conn: Connection): void {
    conn.close(CloseCode.GOING_AWAY, 'server shutting down');
  }

  /** Releases every session's voice clients (the backend hears 'shutdown') and every timer. */
  stop(): Promise<void> {
    for (const off of this.#unhook.splice(0)) off();
    this.#rt.feed({ type: 'shutdown', now: this.#ctx.scheduler.now() });
    return this.#rt.stop();
  }

  routes(): HttpRoute[] {
    const vcSchema = {
      type: 'object',
      properties: {
        guildId: { type: 'string' },
        id: { type: 'string' },
        channelId: { type: 'string' },
        endpoint: { type: ['string', 'null'] },
        createdAt: { type: 'string', format: 'date-time' },
      },
    };
    const sessionSchema = {
      type: 'object',
      properties: {
        key: { type: 'string' },
        userId: { type: 'string' },
        shardId: { type: ['string', 'null'] },
        state: { type: 'string', enum: ['connected', 'detached'] },
        connectionId: { type: ['string', 'null'] },
        remoteAddress: { type: ['string', 'null'] },
        detachedSince: { type: ['string', 'null'], format: 'date-time' },
        expiresAt: { type: ['string', 'null'], format: 'date-time' },
        voiceClients: { type: 'array', items: vcSchema },
        instance: { type: 'string', description: 'cluster mode only: the instance holding the session' },
      },
    };
    const cluster = this.#ctx.broker.kind !== 'local';
    const byKey = (a: View, b: View): number => a.key.localeCompare(b.key) || String(a.instance).localeCompare(String(b.instance));
    return [
      {
        method: 'GET',
        url: '/api/v1/discodo/sessions',
        access: 'admin',
        summary: 'Discodo sessions: connected or detached (resumable until expiresAt), with their voice clients; in cluster mode, every instance\'s',
        response: { type: 'array', items: sessionSchema },
        gathered: 'cluster',
        handler: async () => {
          if (!cluster) return { body: this.#localViews(null).sort(byKey) };
          const { rows, instances } = await gatherRows<View>(this.#ctx.broker, SESSIONS_KIND, null);
          return { body: rows.sort(byKey), headers: instanceHeaders(instances) };
        },
      },
      {
        method: 'GET',
        url: '/api/v1/discodo/sessions/:key',
        access: 'admin',
        summary: 'One discodo session by key (user_id or user_id-shard_id)',
        response: sessionSchema,
        handler: async (req) => {
          const key = req.params.key ?? '';
          const s = this.#rt.state.sessions.get(key);
          if (s) return { body: cluster ? { ...this.#view(s), instance: this.#ctx.broker.instanceId } : this.#view(s) };
          if (!cluster) return httpError('NOT_FOUND', `no discodo session ${key}`);
          // A session is held by one instance: the first that has it answers.
          const { rows, instances } = await gatherRows<View>(this.#ctx.broker, SESSIONS_KIND, key, (found) => found.length > 0);
          const v = rows[0];
          return v ? { body: v } : { ...httpError('NOT_FOUND', `no discodo session ${key}`), headers: instanceHeaders(instances) };
        },
      },
    ];
  }

  /** This instance's sessions (all, or the one with `key`), as the admin API shows them. */
  #localViews(key: string | null): View[] {
    const state = this.#rt.state;
    if (key === null) return [...state.sessions.values()].map((s) => this.#view(s));
    const s = state.sessions.get(key);
    return s ? [this.#view(s)] : [];
  }

  // ---- the state machine's effects ----

  #checkPassword(header: string | undefined): string | undefined {
    if (header === undefined || header === '') return 'Authorization header missing.';
    return this.#secretEquals(header, this.#cfg.password) ? undefined : 'Password mismatch.';
  }

  /** The world's own effects: metrics, the admin name, the voice backend, STATUS. */
  #effect(e: DiscodoEffect): void {
    switch (e.type) {
      case 'identified': {
        const conn = this.#conns.get(e.conn);
        if (conn) conn.identity = e.key;
        return;
      }
      case 'resumed':
        this.#m.resumes.inc({ kind: e.kind });
        return;
      case 'expired':
        this.#m.expiries.inc();
        return;
      case 'voice': {
        const ref = { key: e.session };
        if (e.call === 'connect') {
          // A voice client that moved here with its session was created elsewhere.
          if (e.moved !== true) this.#m.vcCreated.inc();
          this.#callBackend(() => this.#backend.connect(e.vc, ref));
        } else if (e.call === 'update') {
          this.#callBackend(() => this.#backend.update(e.vc, ref));
        } else {
          if (e.reason !== 'moved') this.#m.vcDestroyed.inc({ reason: e.reason });
          this.#callBackend(() => this.#backend.disconnect(e.vc, ref, e.reason));
        }
        return;
      }
      case 'cluster':
        this.#link.publish(e.to, e.msg);
        return;
      case 'handoff':
        this.#m.handoffs.inc({ direction: e.direction });
        return;
      case 'status':
        this.#conns.get(e.conn)?.send(encode.status(this.#statusBody()));
        return;
      default:
        assertNever(e, 'discodo effect');
    }
  }

  #callBackend(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#ctx.logger.error({ err }, 'discodo: the voice backend failed');
    }
  }

  #statusBody(): Record<string, unknown> {
    const c = this.summary();
    return {
      ...this.#status(),
      connections: c.connections,
      sessions: c.sessions,
      live_sessions: c.liveSessions,
      detached_sessions: c.detachedSessions,
      voice_clients: c.voiceClients,
    };
  }

  #view(s: SessionRec): {
    key: string;
    userId: string;
    shardId: string | null;
    state: 'connected' | 'detached';
    connectionId: string | null;
    remoteAddress: string | null;
    detachedSince: string | null;
    expiresAt: string | null;
    voiceClients: Array<{ guildId: string; id: string; channelId: string; endpoint: string | null; createdAt: string }>;
  } {
    const iso = (ms: number): string => new Date(ms).toISOString();
    const text = (id: Snowflake): string => snowflakeKey(id);
    return {
      key: s.key,
      userId: text(s.bot.userId),
      shardId: s.bot.shardId === null ? null : text(s.bot.shardId),
      state: s.attached !== null ? 'connected' : 'detached',
      connectionId: s.attached,
      remoteAddress: s.attached === null ? null : (this.#conns.get(s.attached)?.remoteAddress ?? null),
      detachedSince: s.detachedAt === null ? null : iso(s.detachedAt),
      expiresAt: s.detachedAt === null ? null : iso(s.detachedAt + this.#cfg.vcTimeout),
      voiceClients: [...s.bot.voiceClients.values()].map((vc) => ({
        guildId: text(vc.guildId),
        id: vc.id,
        channelId: text(vc.channelId),
        endpoint: vc.server.endpoint,
        createdAt: iso(vc.createdAt),
      })),
    };
  }
}
