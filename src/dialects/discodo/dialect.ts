import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Counter, Gauge } from 'prom-client';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpRoute } from '../../core/dialect.js';
import { CloseCode } from '../../core/errors.js';
import type { Timer } from '../../core/scheduler.js';
import { SessionManager, type Session } from '../../core/session.js';
import {
  CloseCodes,
  discodoCloseCodes,
  encode,
  sessionKey,
  snowflakeKey,
  type IdentifyData,
  type ResumedForm,
  type Snowflake,
} from '../../protocols/discodo/messages.js';
import { VERSION } from '../../version.js';
import { noopVoiceBackend, type VoiceBackend } from './backend.js';
import { initialState, step, type ConnState, type DiscodoEvent, type Effect, type MachineConfig } from './machine.js';
import { nodeStatusProvider, type NodeStatus } from './status.js';
import {
  destroyVoiceClient,
  newBotState,
  onDiscordEvent,
  playerQuery,
  releaseAll,
  resumedList,
  type BotState,
  type DestroyReason,
  type VoiceStep,
} from './voice.js';

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

interface Peer {
  readonly conn: Connection;
  state: ConnState;
  timer: Timer | undefined;
  session: Session<BotState, Peer> | undefined;
}

export const DEFAULT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

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
  readonly #machine: MachineConfig;
  readonly #ctx: DialectContext;
  readonly #secretEquals: (a: string, b: string) => boolean;
  readonly #backend: VoiceBackend;
  readonly #newId: () => string;
  readonly #status: () => NodeStatus;
  readonly #peers = new Map<Connection, Peer>();
  readonly #sessions: SessionManager<BotState, Peer>;
  readonly #m: {
    resumes: Counter<'kind'>;
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
    this.#machine = { heartbeatInterval: cfg.heartbeatInterval, handshakeTimeout: cfg.handshakeTimeout, version: `muster-${VERSION}` };
    if (cfg.heartbeatInterval >= cfg.handshakeTimeout) {
      ctx.logger.warn(
        { heartbeatInterval: cfg.heartbeatInterval, handshakeTimeout: cfg.handshakeTimeout },
        'discodo: heartbeatInterval is not below handshakeTimeout; clients that heartbeat on HELLO\'s interval will be closed with 4000',
      );
    }
    this.#sessions = new SessionManager<BotState, Peer>({
      scheduler: ctx.scheduler,
      resumeWindowMs: cfg.vcTimeout,
      onExpire: (s) => this.#expire(s),
    });

    const registers = [ctx.registry];
    this.#m = {
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
    let live = 0;
    let vcs = 0;
    let pending = 0;
    for (const s of this.#sessions.values()) {
      if (s.attached) live++;
      vcs += s.state.voiceClients.size;
      pending += s.state.pending.size;
    }
    return {
      connections: this.#peers.size,
      sessions: this.#sessions.size,
      liveSessions: live,
      detachedSessions: this.#sessions.size - live,
      voiceClients: vcs,
      pendingVoice: pending,
    };
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    if (typeof secrets.password === 'string') this.#cfg = { ...this.#cfg, password: secrets.password };
  }

  accept(conn: Connection, req: IncomingMessage): ConnectionHandler {
    const now = this.#ctx.scheduler.now();
    const peer: Peer = { conn, state: initialState(now), timer: undefined, session: undefined };
    this.#peers.set(conn, peer);
    conn.onSlowConsumer = (c) => c.close(CloseCodes.SLOW_CONSUMER, 'slow consumer');
    const forbidden = this.#checkPassword(req.headers.authorization);
    if (forbidden !== undefined) this.#m.forbidden.inc();
    else conn.markAuthenticated();
    this.#feed(peer, { type: 'open', now, forbidden });
    return {
      onMessage: (data, binary) => this.#feed(peer, { type: 'frame', now: this.#ctx.scheduler.now(), data, binary }),
      onClose: () => this.#release(peer),
    };
  }

  kick(conn: Connection): void {
    conn.close(CloseCode.POLICY_VIOLATION, 'kicked by an operator');
  }

  goodbye(conn: Connection): void {
    conn.close(CloseCode.GOING_AWAY, 'server shutting down');
  }

  stop(): void {
    for (const s of [...this.#sessions.values()]) this.#apply(s, releaseAll(s.state, 'shutdown'));
    this.#sessions.clear();
    for (const p of this.#peers.values()) {
      p.timer?.cancel();
      p.timer = undefined;
    }
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
      },
    };
    return [
      {
        method: 'GET',
        url: '/api/v1/discodo/sessions',
        access: 'admin',
        summary: 'Discodo sessions: connected or detached (resumable until expiresAt), with their voice clients',
        response: { type: 'array', items: sessionSchema },
        handler: () => ({ body: [...this.#sessions.values()].map((s) => this.#view(s)).sort((a, b) => a.key.localeCompare(b.key)) }),
      },
      {
        method: 'GET',
        url: '/api/v1/discodo/sessions/:key',
        access: 'admin',
        summary: 'One discodo session by key (user_id or user_id-shard_id)',
        response: sessionSchema,
        handler: (req) => {
          const s = this.#sessions.get(req.params.key ?? '');
          return s
            ? { body: this.#view(s) }
            : { status: 404, body: { error: 'NOT_FOUND', message: `no discodo session ${req.params.key ?? ''}` } };
        },
      },
    ];
  }

  // ---- the state machine's effects ----

  #checkPassword(header: string | undefined): string | undefined {
    if (header === undefined || header === '') return 'Authorization header missing.';
    return this.#secretEquals(header, this.#cfg.password) ? undefined : 'Password mismatch.';
  }

  #feed(peer: Peer, event: DiscodoEvent): void {
    const { state, effects } = step(peer.state, event, this.#machine);
    peer.conn.stateChanged(peer.state.phase, state.phase);
    peer.state = state;
    for (const e of effects) this.#run(peer, e);
  }

  #run(peer: Peer, e: Effect): void {
    switch (e.type) {
      case 'send':
        peer.conn.send(e.frame);
        return;
      case 'close':
        peer.timer?.cancel();
        peer.timer = undefined;
        peer.conn.close(e.code, e.reason);
        return;
      case 'arm':
        peer.timer?.cancel();
        peer.timer = this.#ctx.scheduler.after(e.ms, () => {
          peer.timer = undefined;
          this.#feed(peer, { type: 'deadline', now: this.#ctx.scheduler.now() });
        });
        return;
      case 'identify':
        this.#identify(peer, e.data);
        return;
      case 'discord-event': {
        const s = peer.session;
        if (s) this.#apply(s, onDiscordEvent(s.state, e.event.t, e.event.d, { now: this.#ctx.scheduler.now(), newId: this.#newId }));
        return;
      }
      case 'vc-destroy': {
        const s = peer.session;
        if (s) this.#apply(s, destroyVoiceClient(s.state, e.op, e.guildId));
        return;
      }
      case 'query': {
        const s = peer.session;
        if (s) peer.conn.send(playerQuery(s.state, e.op, e.guildId));
        return;
      }
      case 'status':
        peer.conn.send(encode.status(this.#statusBody()));
        return;
    }
  }

  #identify(peer: Peer, data: IdentifyData): void {
    const key = sessionKey(data.userId, data.shardId);
    const existing = this.#sessions.get(key);
    peer.conn.identity = key;
    if (!existing) {
      peer.session = this.#sessions.create(key, newBotState(data.userId, data.shardId), peer);
      peer.conn.send(encode.identified());
      return;
    }
    const old = existing.attached;
    if (old && old !== peer) {
      // A newer socket takes a live session over; the older one is closed with 4005.
      old.session = undefined;
      old.state = { ...old.state, phase: 'closed' };
      old.timer?.cancel();
      old.timer = undefined;
      old.conn.close(CloseCodes.TAKEN_OVER, 'session taken over by a newer connection');
    }
    this.#m.resumes.inc({ kind: old ? 'takeover' : 'detached' });
    this.#sessions.resume(existing, peer);
    peer.session = existing;
    peer.conn.send(encode.identified());
    peer.conn.send(encode.resumed(resumedList(existing.state), this.#cfg.compat));
  }

  /** Applies a voice step to a session: new state, frames to its socket, calls to the backend. */
  #apply(s: Session<BotState, Peer>, vs: VoiceStep): void {
    s.state = vs.state;
    const ref = { key: s.key };
    for (const e of vs.effects) {
      switch (e.type) {
        case 'send':
          s.attached?.conn.send(e.frame);
          break;
        case 'connect':
          this.#m.vcCreated.inc();
          this.#callBackend(() => this.#backend.connect(e.vc, ref));
          break;
        case 'update':
          this.#callBackend(() => this.#backend.update(e.vc, ref));
          break;
        case 'disconnect':
          this.#m.vcDestroyed.inc({ reason: e.reason });
          this.#callBackend(() => this.#backend.disconnect(e.vc, ref, e.reason));
          break;
      }
    }
  }

  #callBackend(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#ctx.logger.error({ err }, 'discodo: the voice backend failed');
    }
  }

  #expire(s: Session<BotState, Peer>): void {
    this.#m.expiries.inc();
    this.#ctx.logger.debug({ session: s.key, voiceClients: s.state.voiceClients.size }, 'discodo: session expired');
    this.#apply(s, releaseAll(s.state, 'expired' satisfies DestroyReason));
  }

  #release(peer: Peer): void {
    peer.timer?.cancel();
    peer.timer = undefined;
    peer.state = { ...peer.state, phase: 'closed' };
    this.#peers.delete(peer.conn);
    const s = peer.session;
    peer.session = undefined;
    // Keep the voice clients for vcTimeout, unless a newer socket already holds the session.
    if (s && s.attached === peer) this.#sessions.detach(s);
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

  #view(s: Session<BotState, Peer>): {
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
      userId: text(s.state.userId),
      shardId: s.state.shardId === null ? null : text(s.state.shardId),
      state: s.attached ? 'connected' : 'detached',
      connectionId: s.attached?.conn.id ?? null,
      remoteAddress: s.attached?.conn.remoteAddress ?? null,
      detachedSince: s.detachedAt === undefined ? null : iso(s.detachedAt),
      expiresAt: s.detachedAt === undefined ? null : iso(s.detachedAt + this.#sessions.resumeWindowMs),
      voiceClients: [...s.state.voiceClients.values()].map((vc) => ({
        guildId: text(vc.guildId),
        id: vc.id,
        channelId: text(vc.channelId),
        endpoint: vc.server.endpoint,
        createdAt: iso(vc.createdAt),
      })),
    };
  }
}
