import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { LocalBroker, type Broker } from './cluster/broker.js';
import { SystemClock, type Clock } from './core/clock.js';
import type { Dialect } from './core/dialect.js';
import { CoreMetrics } from './core/metrics.js';
import { Scheduler } from './core/scheduler.js';
import { formatMode, secureDataDir } from './config/datadir.js';
import { constantTimeEqual } from './config/secrets.js';
import type { MusterConfig } from './config/schema.js';
import { buildDialects, dialectSecrets } from './dialects/index.js';
import { buildHttpApp } from './http/app.js';
import { createStore } from './store/index.js';
import type { Store } from './store/types.js';
import { Transport } from './transport/upgrade.js';
import { VERSION } from './version.js';
import { releaseYoungGeneration } from './young-gen.js';

/**
 * The composition root: one process, one port. Wires the scheduler, the store, the
 * broker, the dialects, the HTTP app and the WebSocket transport together.
 */
export interface MusterOptions {
  /** A config whose secrets are already resolved (see config/secrets.ts). */
  config: MusterConfig;
  clock?: Clock;
  logger?: Logger;
  store?: Store;
  broker?: Broker;
  /** Collect Node's default process metrics (off in tests that build many servers). */
  defaultMetrics?: boolean;
  /** The log destination's count of dropped lines, for muster_log_lines_dropped_total. */
  logLinesDropped?: () => number;
}

export interface Muster {
  readonly config: MusterConfig;
  readonly scheduler: Scheduler;
  readonly store: Store;
  readonly metrics: CoreMetrics;
  readonly dialects: readonly Dialect[];
  readonly http: FastifyInstance;
  readonly transport: Transport;
  readonly logger: Logger;
  /** Where it listens, once started. */
  url(): string;
  address(): AddressInfo;
  dialect<T extends Dialect = Dialect>(name: string): T | undefined;
  /** Applies new secrets without dropping connections (SIGHUP). */
  reloadSecrets(config: MusterConfig): void;
  /** Graceful stop: goodbyes (1001), flush the store, close the listener. */
  stop(): Promise<void>;
}

export async function startMuster(opts: MusterOptions): Promise<Muster> {
  let config = opts.config;
  const logger = opts.logger ?? pino({ level: config.log.level });
  const clock = opts.clock ?? new SystemClock();
  const scheduler = new Scheduler(clock, (err) => logger.error({ err }, 'a scheduled task failed'));
  if (!opts.store) {
    for (const t of secureDataDir(config.dataDir, { create: storeKind(config) === 'sqlite' })) {
      logger.warn({ path: t.path, from: formatMode(t.from), to: formatMode(t.to) }, 'data directory: was open to other users; made owner-only');
    }
  }
  const store = opts.store ?? createStore({ kind: storeKind(config), dataDir: config.dataDir, now: () => clock.now() });
  const broker = opts.broker ?? new LocalBroker();
  const metrics = new CoreMetrics({
    defaultMetrics: opts.defaultMetrics ?? true,
    ...(opts.logLinesDropped ? { logLinesDropped: opts.logLinesDropped } : {}),
  });
  const adminToken = (): string => config.admin.token ?? '';

  const ctx = { scheduler, store, broker, logger, registry: metrics.registry };
  const dialects = buildDialects(config, ctx, { secretEquals: constantTimeEqual });

  const https = config.tls ? { cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) } : undefined;
  const http = await buildHttpApp({
    logger,
    metrics,
    store,
    scheduler,
    dialects,
    version: VERSION,
    adminToken,
    secretEquals: constantTimeEqual,
    transport: () => transport,
    https,
    timeouts: config.http,
    failedAuthPerIpPerMinute: () => config.admin.failedAuthPerIpPerMinute,
  });
  const transport = new Transport({ server: http.server, dialects, limits: config.limits, scheduler, metrics, logger, secrets: () => secretValues(config) });
  await http.listen({ host: config.listen.host, port: config.listen.port });
  // Start-up is over: the young generation may grow again (see young-gen.ts).
  releaseYoungGeneration();
  const addr = http.server.address() as AddressInfo;
  const scheme = https ? 'https' : 'http';
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const base = `${scheme}://${host}:${addr.port}`;

  let stopping: Promise<void> | undefined;
  const t = transport;
  return {
    get config() {
      return config;
    },
    scheduler,
    store,
    metrics,
    dialects,
    http,
    transport: t,
    logger,
    url: () => base,
    address: () => addr,
    dialect: <T extends Dialect = Dialect>(name: string) => dialects.find((d) => d.name === name) as T | undefined,
    reloadSecrets(next: MusterConfig) {
      config = { ...config, admin: next.admin, dialects: next.dialects };
      for (const d of dialects) d.reloadSecrets?.(dialectSecrets(next, d.name));
      logger.info('secrets reloaded');
    },
    stop() {
      stopping ??= (async () => {
        await t.shutdown(config.shutdownTimeout);
        for (const d of dialects) await d.stop?.();
        await http.close();
        scheduler.clear();
        await broker.close();
        try {
          await store.flush();
          if (!opts.store) await store.close();
        } catch (err) {
          logger.error({ err }, 'store: flush on shutdown failed');
        }
      })();
      return stopping;
    },
  };
}

/** Every configured secret's value (admin token, dialect tokens and passwords), for log redaction. */
function secretValues(config: MusterConfig): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (typeof v === 'string') out.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') Object.values(v).forEach(walk);
  };
  walk(config.admin.token);
  for (const d of Object.keys(config.dialects)) walk(dialectSecrets(config, d));
  return out;
}

function storeKind(config: MusterConfig): 'memory' | 'sqlite' {
  const kind = config.store.kind;
  if (kind === 'redis') throw new Error('store.kind "redis" (cluster mode) is not available in this version; use "sqlite" or "memory"');
  return kind;
}
