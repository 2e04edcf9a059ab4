import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger } from 'pino';
import { LocalBroker, type Broker } from './cluster/broker.js';
import { registerBrokerMetrics } from './cluster/metrics.js';
import { RedisBroker } from './cluster/redis-broker.js';
import type { Leadership } from './cluster/leadership.js';
import { RedisLease } from './cluster/lease.js';
import { SystemClock, type Clock } from './core/clock.js';
import type { Dialect } from './core/dialect.js';
import { CoreMetrics } from './core/metrics.js';
import { Scheduler } from './core/scheduler.js';
import { formatMode, secureDataDir } from './config/datadir.js';
import { generateInstanceId } from './config/instance-id.js';
import { constantTimeEqual } from './config/secrets.js';
import type { MusterConfig } from './config/schema.js';
import { buildLoaded, dialectSecrets, loadDialectFactories } from './dialects/load.js';
import { buildHttpApp } from './http/app.js';
import { redisSecrets, redisStoreOptions } from './store/from-config.js';
import { createStore } from './store/index.js';
import { DEFAULT_REDIS_URL, RedisStore } from './store/redis.js';
import type { Store } from './store/types.js';
import { Transport } from './transport/upgrade.js';
import { VERSION } from './version.js';
import { holdDuringBurst, releaseYoungGeneration } from './young-gen.js';

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
  /** Default: a RedisBroker when the config names a cluster Redis (see `clusterRedisUrl`), else a LocalBroker. */
  broker?: Broker;
  /**
   * Cluster mode: the leadership (a Redis lease) the sharding orchestrator runs under;
   * the broker's instanceId names this instance. Absent: always the leader.
   */
  leadership?: Leadership;
  /** Collect Node's default process metrics (off in tests that build many servers). */
  defaultMetrics?: boolean;
  /** The log destination's count of dropped lines, for muster_log_lines_dropped_total. */
  logLinesDropped?: () => number;
}

export interface Muster {
  readonly config: MusterConfig;
  /** `config.instanceId`, or a fresh one for this process when the caller resolved none (see config/instance-id.ts). */
  readonly instanceId: string;
  readonly scheduler: Scheduler;
  readonly store: Store;
  readonly broker: Broker;
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
  // The enabled dialects' modules, and the sharding store namespace's name for a lease on
  // a Redis store, are loaded first: from here to joining the cluster nothing waits.
  const factories = await loadDialectFactories(config);
  const shardingNs =
    opts.leadership === undefined && (opts.store ? opts.store instanceof RedisStore : config.store.kind === 'redis')
      ? (await import('./dialects/sharding/dialect.js')).STORE_NS
      : undefined;
  const logger = opts.logger ?? pino({ level: config.log.level });
  const clock = opts.clock ?? new SystemClock();
  const scheduler = new Scheduler(clock, (err) => logger.error({ err }, 'a scheduled task failed'));
  if (!opts.store) {
    for (const t of secureDataDir(config.dataDir, { create: config.store.kind === 'sqlite' })) {
      logger.warn({ path: t.path, from: formatMode(t.from), to: formatMode(t.to) }, 'data directory: was open to other users; made owner-only');
    }
  }
  const instanceId = config.instanceId ?? generateInstanceId();
  const store = opts.store ?? createStore({ kind: config.store.kind, dataDir: config.dataDir, now: () => clock.now(), redis: config.store.kind === 'redis' ? redisStoreOptions(config.store, logger) : undefined });
  const redisUrl = clusterRedisUrl(config);
  const broker =
    opts.broker ??
    (redisUrl !== undefined
      ? new RedisBroker({ url: redisUrl, prefix: config.cluster.prefix, presenceTtl: config.cluster.presenceTtl, gatherTimeout: config.cluster.gatherTimeout, instanceId, logger })
      : new LocalBroker(instanceId));
  const metrics = new CoreMetrics({
    defaultMetrics: opts.defaultMetrics ?? true,
    instanceId,
    ...(opts.logLinesDropped ? { logLinesDropped: opts.logLinesDropped } : {}),
  });
  if (broker instanceof RedisBroker) registerBrokerMetrics(metrics.registry, broker);
  const adminToken = (): string => config.admin.token ?? '';

  const ctx = { scheduler, store, broker, logger, registry: metrics.registry };
  // Cluster mode with a Redis store: the sharding orchestrator runs under a Redis lease on the
  // namespace it writes, so its writes are fenced by the lease's token.
  const lease =
    shardingNs !== undefined && store instanceof RedisStore && broker.kind !== 'local'
      ? new RedisLease({
          store,
          ns: shardingNs,
          instanceId,
          clock,
          leaseMs: config.cluster.leaseTtl,
          onError: (err) => logger.warn({ err: err.message }, 'cluster: the sharding lease could not reach Redis (retrying)'),
        })
      : undefined;
  lease?.onChange((leader, token) => logger.info({ instanceId, token }, leader ? 'cluster: this instance leads the sharding fleet' : 'cluster: this instance no longer leads the sharding fleet'));
  const leadership = opts.leadership ?? lease;
  const dialects = buildLoaded(factories, config, ctx, { secretEquals: constantTimeEqual, ...(leadership ? { leadership } : {}) });
  // Joins the cluster now that the dialects have subscribed to what they hear from it.
  await broker.start();
  void lease?.start();

  const https = config.tls ? { cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) } : undefined;
  const http = await buildHttpApp({
    logger,
    metrics,
    store,
    scheduler,
    dialects,
    version: VERSION,
    instanceId,
    adminToken,
    secretEquals: constantTimeEqual,
    transport: () => transport,
    https,
    timeouts: config.http,
    failedAuthPerIpPerMinute: () => config.admin.failedAuthPerIpPerMinute,
    clusterReady: broker.kind === 'local' ? undefined : () => broker.ready,
    broker,
  });
  const transport = new Transport({ server: http.server, dialects, limits: config.limits, scheduler, metrics, logger, secrets: () => secretValues(config), onConnectBurst: holdDuringBurst });
  try {
    await http.listen({ host: config.listen.host, port: config.listen.port });
  } catch (err) {
    // Leave the cluster this start joined (its connections would keep the process alive).
    await lease?.stop();
    if (!opts.broker) await broker.close();
    throw err;
  }
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
    instanceId,
    scheduler,
    store,
    broker,
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
        // Gives the lease back at once, so another instance takes the fleet without waiting for it to run out.
        await lease?.stop();
        scheduler.clear();
        await broker.close();
        try {
          await store.flush();
        } catch (err) {
          logger.error({ err }, 'store: flush on shutdown failed');
        }
        try {
          if (!opts.store) await store.close();
        } catch (err) {
          logger.error({ err }, 'store: close on shutdown failed');
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
  walk(redisSecrets(config.store));
  for (const d of Object.keys(config.dialects)) walk(dialectSecrets(config, d));
  return out;
}

/**
 * Cluster mode's Redis: `cluster.redisUrl`, or the store's URL when the store is Redis (its
 * default URL when none is given; the config refuses a store reached through Sentinel or a
 * Cluster without `cluster.redisUrl`).
 */
export function clusterRedisUrl(config: MusterConfig): string | undefined {
  if (config.cluster.redisUrl !== undefined) return config.cluster.redisUrl;
  const st = config.store;
  if (st.kind !== 'redis') return undefined;
  return st.url ?? (st.sentinels === undefined && st.cluster === undefined ? DEFAULT_REDIS_URL : undefined);
}
