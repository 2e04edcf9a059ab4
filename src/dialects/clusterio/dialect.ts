/**
 * The Clusterio dialect: the thin shell the core talks to. Its jobs live in their own
 * modules over one shared `Hub` (types.ts): the socket and link machine (links.ts),
 * registration and token checks (handshake.ts), sessions (sessions.ts), the instance
 * registry and its persistence (instances.ts, registry.ts), forwarding and relayed
 * answers (forwarding.ts), plugin events (plugins.ts), metrics from slaves (metrics.ts)
 * and the admin routes (routes.ts).
 */
import type { IncomingMessage } from 'node:http';
import type { Connection } from '../../core/connection.js';
import { DEFAULT_PRE_AUTH_MAX_BYTES, type ConnectionHandler, type Dialect, type DialectContext, type HttpRoute } from '../../core/dialect.js';
import { PendingRequests } from '../../core/pending.js';
import { LogLimiter } from '../../core/ratelimit.js';
import { SessionManager } from '../../core/session.js';
import type { LJson } from '../../protocols/clusterio/codec.js';
import { getField } from '../../protocols/clusterio/config.js';
import { ClusterioClose, clusterioCloseCodes, CloseReason, PROTOCOL_VERSION } from '../../protocols/clusterio/messages.js';
import { timedOut } from './forwarding.js';
import { armHandshake, deferUntilLoaded, feedFrame, onLinkClose, onLoaded, run, sendLink } from './links.js';
import { initialState } from './machine.js';
import { createMetrics, scrapeSlaves } from './metrics.js';
import { ClusterioRegistry } from './registry.js';
import { clusterioRoutes } from './routes.js';
import { retire } from './sessions.js';
import { TokenVerifier } from './token.js';
import { DEFAULT_METRICS_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, type ClusterioDialectConfig, type Hub, type Link, type Outstanding, type Peer } from './types.js';

export { DEFAULT_METRICS_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, type ClusterioDialectConfig } from './types.js';

export class ClusterioDialect implements Dialect {
  readonly name = 'clusterio';
  readonly path: string;
  readonly closeCodes = clusterioCloseCodes;
  readonly maxBufferedBytes: number;
  readonly preAuthMaxBytes: number;

  readonly #hub: Hub;
  readonly #loading: Promise<void>;

  constructor(cfg: ClusterioDialectConfig, ctx: DialectContext) {
    const full: Required<ClusterioDialectConfig> = {
      requestTimeout: DEFAULT_REQUEST_TIMEOUT,
      metricsTimeout: DEFAULT_METRICS_TIMEOUT,
      handshakeTimeout: 2 * cfg.heartbeatInterval,
      maxBufferedBytes: 4 * 1024 * 1024,
      sessionBufferBytes: 4 * 1024 * 1024,
      preAuthMaxBytes: DEFAULT_PRE_AUTH_MAX_BYTES,
      ...cfg,
    };
    this.path = cfg.path;
    this.maxBufferedBytes = full.maxBufferedBytes;
    this.preAuthMaxBytes = full.preAuthMaxBytes;
    const registry = new ClusterioRegistry(ctx.store, ctx.logger);
    const slaves = new Map<string, Peer>();
    const controls = new Set<Peer>();
    const hub: Hub = {
      cfg: full,
      tokens: new TokenVerifier(full.authSecret),
      ctx,
      registry,
      links: new Map(),
      slaves,
      controls,
      sessions: new SessionManager<Peer, Link>({
        scheduler: ctx.scheduler,
        resumeWindowMs: cfg.sessionTimeout,
        maxBufferedBytes: full.sessionBufferBytes,
        onExpire: (s) => retire(hub, s.state, 'session expired'),
      }),
      pending: new PendingRequests<Outstanding>(ctx.scheduler, (e) => timedOut(e)),
      loaded: false,
      families: new Map(),
      peerLog: new LogLimiter<string>(() => ctx.scheduler.now(), { perSecond: 1, burst: 5 }),
      m: createMetrics(ctx.registry, slaves, controls, registry),
    };
    this.#hub = hub;
    this.#loading = registry.load().then(
      () => onLoaded(hub),
      (err: unknown) => {
        ctx.logger.error({ err }, 'clusterio: could not read slaves and instances from the store; starting empty');
        onLoaded(hub);
      },
    );
  }

  /** Live counts, for leak checks and `muster status`. */
  summary(): Record<string, number> {
    return {
      connections: this.#hub.links.size,
      slaves: this.#hub.slaves.size,
      controls: this.#hub.controls.size,
      sessions: this.#hub.sessions.size,
      pendingRequests: this.#hub.pending.size,
      knownSlaves: this.#hub.registry.slaves.size,
      instances: this.#hub.registry.instances.size,
    };
  }

  /** Resolves once the registry is loaded and every write so far is in the store. */
  async flushed(): Promise<void> {
    await this.#loading;
    await this.#hub.registry.flush();
  }

  reloadSecrets(secrets: Record<string, unknown>): void {
    if (typeof secrets.authSecret !== 'string' || secrets.authSecret === this.#hub.cfg.authSecret) return;
    this.#hub.cfg = { ...this.#hub.cfg, authSecret: secrets.authSecret };
    this.#hub.tokens = new TokenVerifier(secrets.authSecret);
  }

  accept(conn: Connection, _req: IncomingMessage): ConnectionHandler {
    const link: Link = {
      conn,
      state: initialState,
      seedSeq: 1,
      peer: undefined,
      deferred: [],
      deferredBytes: 0,
      handshakeTimer: undefined,
      heartbeat: undefined,
      endSession: false,
    };
    this.#hub.links.set(conn, link);
    conn.onSlowConsumer = () => {
      this.#hub.ctx.logger.warn({ conn: conn.id, buffered: conn.bufferedAmount }, 'clusterio: slow consumer cut');
      run(this.#hub, link, { type: 'close', code: ClusterioClose.SLOW_CONSUMER, reason: CloseReason.SLOW_CONSUMER });
    };
    sendLink(link, 'hello', JSON.stringify({ version: PROTOCOL_VERSION }));
    armHandshake(this.#hub, link);
    return {
      onMessage: (data, isBinary) => {
        const text = isBinary ? undefined : data.toString('utf8');
        if (!this.#hub.loaded) {
          deferUntilLoaded(this.#hub, link, text, data.length);
          return;
        }
        if (link.deferred.length > 0) {
          link.deferred.push(text);
          return;
        }
        feedFrame(this.#hub, link, text);
      },
      onClose: (code) => onLinkClose(this.#hub, link, code),
    };
  }

  kick(conn: Connection): void {
    const link = this.#hub.links.get(conn);
    if (link) run(this.#hub, link, { type: 'close', code: ClusterioClose.POLICY_VIOLATION, reason: CloseReason.KICKED });
    else conn.close(ClusterioClose.POLICY_VIOLATION, CloseReason.KICKED);
  }

  goodbye(conn: Connection): void {
    const link = this.#hub.links.get(conn);
    if (link) run(this.#hub, link, { type: 'close', code: ClusterioClose.GOING_AWAY, reason: CloseReason.SHUTDOWN });
    else conn.close(ClusterioClose.GOING_AWAY, CloseReason.SHUTDOWN);
  }

  async stop(): Promise<void> {
    for (const e of this.#hub.pending.clear()) e.data.fail('the server is shutting down');
    for (const s of [...this.#hub.sessions.values()]) retire(this.#hub, s.state, 'server shutting down');
    this.#hub.sessions.clear();
    for (const name of this.#hub.families.keys()) this.#hub.ctx.registry.removeSingleMetric(name);
    this.#hub.families.clear();
    await this.flushed();
  }

  /** Asks every connected slave for its metrics and publishes them with a slave_id label. */
  beforeScrape(): Promise<void> {
    return scrapeSlaves(this.#hub);
  }

  routes(): HttpRoute[] {
    return clusterioRoutes(this.#hub);
  }

  /** For tests: a field of an instance's stored config. */
  instanceField(id: string, path: string): LJson | undefined {
    const rec = this.#hub.registry.instances.get(id);
    return rec ? getField(rec.config, path) : undefined;
  }
}
