import { createRequire } from 'node:module';
import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Dialect, HttpRequest, HttpRoute } from '../core/dialect.js';
import type { CoreMetrics } from '../core/metrics.js';
import type { Scheduler } from '../core/scheduler.js';
import type { Store } from '../store/types.js';
import type { Transport } from '../transport/upgrade.js';
import { AdminAuthGuard } from './admin-guard.js';
import { IpRateLimiter } from './ip-limit.js';
import { bodyChecker } from './body.js';
import { dashboardRoutes, documentDashboard, mountDashboard } from './dashboard.js';
import { buildOpenApi } from './openapi.js';
import { Errors, httpError } from '../common/errors.js';
import { LocalBroker, type Broker } from '../cluster/broker.js';
import { instanceHeaders } from '../cluster/admin-view.js';
import { answerClusterAdmin, clusterPeers, clusterStatus, documentClusterAdmin, instancesSchema, kickAnywhere, type ClusterAdminOptions } from './cluster-admin.js';

/**
 * The HTTP side of the one listener: health, readiness, metrics, and the admin API
 * under /api/v1 behind `Authorization: Bearer <admin token>`. Dialects add routes as
 * plain descriptions (HttpRoute); this module mounts them and documents them.
 */
export interface HttpAppOptions {
  logger: Logger;
  metrics: CoreMetrics;
  store: Store;
  scheduler: Scheduler;
  dialects: Dialect[];
  version: string;
  /** This instance's id (config `instanceId`), shown by /readyz and the status route. */
  instanceId?: string | undefined;
  /** Returns the current admin token (it can change on SIGHUP). */
  adminToken: () => string;
  secretEquals: (a: string, b: string) => boolean;
  transport: () => Transport | undefined;
  https?: { cert: Buffer; key: Buffer } | undefined;
  /** Config `http`: header and request timeouts in ms (0 turns one off), and the idle keep-alive timeout. */
  timeouts?: HttpTimeouts | undefined;
  /** Config `admin.failedAuthPerIpPerMinute` (it can change on SIGHUP). */
  failedAuthPerIpPerMinute?: (() => number) | undefined;
  /** Cluster mode: whether this instance has joined its peers over Redis (for /readyz). */
  clusterReady?: (() => boolean) | undefined;
  /**
   * The broker the admin lists, status and kick reach every instance through (see
   * cluster-admin.ts). Default: a LocalBroker, this instance alone.
   */
  broker?: Broker | undefined;
}

export interface HttpTimeouts {
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
}

/** The config's defaults (src/config/schema.ts), for an app built without a config. */
const DEFAULT_TIMEOUTS: HttpTimeouts = { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000 };

export const ADMIN_PREFIX = '/api/v1';

/**
 * Fastify's schema compilers (ajv for validation, fast-json-stringify for responses),
 * loaded the first time a route with a fastify `schema` is mounted. Muster mounts none
 * (bodies are checked by http/body.ts, replies are plain JSON), but fastify requires both
 * packages when it is created unless it is given its compiler factories: about 2 MiB of
 * baseline memory for code that never runs. A route with a schema (an embedder's own,
 * on `Muster.http`) gets fastify's default compilers, built by the same factories.
 */
const requireFromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'));
type Factory = (...args: unknown[]) => unknown;
type CompilersFactory = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>;
const lazyFactory = (pkg: string): Factory => {
  let real: Factory | undefined;
  return (...args) => {
    real ??= (requireFromFastify(pkg) as () => Factory)();
    return real(...args);
  };
};
export const LAZY_SCHEMA_COMPILERS = {
  buildValidator: lazyFactory('@fastify/ajv-compiler'),
  buildSerializer: lazyFactory('@fastify/fast-json-stringify-compiler'),
} as unknown as CompilersFactory;

export function coreRoutes(opts: HttpAppOptions, cluster: ClusterAdminOptions): HttpRoute[] {
  const connectionSchema = {
    type: 'object',
    properties: {
      id: { type: 'string' },
      dialect: { type: 'string' },
      remoteAddress: { type: 'string' },
      connectedAt: { type: 'string', format: 'date-time' },
      identity: { type: ['string', 'null'] },
      instance: { type: 'string', description: 'the instance holding it' },
    },
  };
  return [
    {
      method: 'GET',
      url: `${ADMIN_PREFIX}/connections`,
      access: 'admin',
      summary: 'Every open WebSocket connection, on every instance (headers muster-instances and muster-instances-missing say which answered)',
      response: { type: 'array', items: connectionSchema },
      gathered: 'always',
      handler: async () => {
        const { peers, instances } = await clusterPeers(cluster);
        return {
          headers: instanceHeaders(instances),
          body: peers.map((c) => ({ id: c.id, dialect: c.dialect, remoteAddress: c.remoteAddress, connectedAt: c.connectedAt, identity: c.identity, instance: c.instance })),
        };
      },
    },
    {
      method: 'DELETE',
      url: `${ADMIN_PREFIX}/connections/:id`,
      access: 'admin',
      summary: "Kick a connection on any instance (it gets its dialect's goodbye); `?reason=` is logged where it closes",
      response: { type: 'object', properties: { kicked: { type: 'string' }, instance: { type: 'string', description: 'the instance that closed it' } } },
      handler: (req) => kickAnywhere(cluster, req),
    },
    {
      method: 'GET',
      url: `${ADMIN_PREFIX}/status`,
      access: 'admin',
      summary: 'A one-screen summary: connections per dialect over every instance, each instance, and what each dialect holds',
      response: {
        type: 'object',
        properties: {
          version: { type: 'string', description: 'this instance' },
          instanceId: { type: 'string', description: 'this instance' },
          uptimeSeconds: { type: 'integer', description: 'this instance' },
          store: { type: 'string' },
          connections: { type: 'object', additionalProperties: { type: 'integer' }, description: 'open connections per dialect, summed over the instances that answered' },
          dialects: { type: 'object', description: "each dialect's path and summary, as this instance sees it" },
          instances: {
            ...instancesSchema,
            items: {
              ...instancesSchema.items,
              properties: {
                ...instancesSchema.items.properties,
                version: { type: 'string' },
                uptimeSeconds: { type: 'integer' },
                connections: { type: 'object', additionalProperties: { type: 'integer' }, description: "that instance's open connections per dialect" },
              },
            },
          },
        },
      },
      handler: async () => {
        const { connections, instances } = await clusterStatus(cluster);
        return {
          body: {
            version: opts.version,
            ...(opts.instanceId !== undefined ? { instanceId: opts.instanceId } : {}),
            uptimeSeconds: Math.round(process.uptime()),
            store: opts.store.kind,
            connections,
            dialects: Object.fromEntries(opts.dialects.map((d) => [d.name, { path: d.path, ...(d.summary?.() ?? {}) }])),
            instances,
          },
        };
      },
    },
  ];
}

export async function buildHttpApp(opts: HttpAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.logger.child({ component: 'http' }),
    logController: new LogController({ disableRequestLogging: true }),
    trustProxy: false,
    bodyLimit: 1 << 20,
    schemaController: { compilersFactory: LAZY_SCHEMA_COMPILERS },
    ...(opts.https ? { https: opts.https } : {}),
  }) as unknown as FastifyInstance;
  applyTimeouts(app.server, opts.timeouts ?? DEFAULT_TIMEOUTS);

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    opts.metrics.httpDuration.observe({ method: req.method, route, status: String(reply.statusCode) }, reply.elapsedTime / 1000);
  });

  app.get('/healthz', async () => ({ status: 'ok' }));
  // 200 once the store answers; 503 while it does not (a Redis store reconnects by itself).
  const instance = opts.instanceId !== undefined ? { instanceId: opts.instanceId } : {};
  app.get('/readyz', async (_req, reply) => {
    try {
      await opts.store.ping();
      if (opts.clusterReady && !opts.clusterReady()) {
        return await reply.code(503).send({ status: 'unavailable', ...instance, error: 'cluster: not joined over Redis (unreachable, or joining)' });
      }
      return { status: 'ready', ...instance };
    } catch (err) {
      return reply.code(503).send({ status: 'unavailable', ...instance, error: (err as Error).message });
    }
  });
  app.get('/metrics', async (_req, reply) => {
    const gathered = await Promise.allSettled(opts.dialects.map((d) => d.beforeScrape?.()));
    for (const g of gathered) if (g.status === 'rejected') opts.logger.warn({ err: g.reason }, 'a dialect failed to gather metrics');
    const body = await opts.metrics.registry.metrics();
    return reply.type(opts.metrics.registry.contentType).send(body);
  });

  const broker = opts.broker ?? new LocalBroker(opts.instanceId);
  const cluster: ClusterAdminOptions = { broker, transport: opts.transport, version: opts.version };
  const stopAnswering = answerClusterAdmin(cluster);
  app.addHook('onClose', async () => stopAnswering());
  const routes = [...coreRoutes(opts, cluster), ...opts.dialects.flatMap((d) => d.routes?.() ?? []), ...dashboardRoutes(opts, cluster)];
  // The document is built on its first request, not at start: a server that is never
  // asked for it does not keep it (it is a deep copy of every route's description).
  let openapi: Record<string, unknown> | undefined;
  const documented = [...routes]; // not the document's own route
  const document = (): Record<string, unknown> => {
    if (openapi !== undefined) return openapi;
    const doc = buildOpenApi(documented, opts.version);
    documentClusterAdmin(doc.paths as Parameters<typeof documentClusterAdmin>[0]);
    documentDashboard(doc, opts, hub);
    return (openapi = doc);
  };
  routes.push({
    method: 'GET',
    url: `${ADMIN_PREFIX}/openapi.json`,
    access: 'admin',
    summary: 'This document',
    handler: () => ({ body: document() }),
  });

  const guard = new AdminAuthGuard({
    now: () => opts.scheduler.now(),
    failuresPerMinute: opts.failedAuthPerIpPerMinute ?? (() => 10),
    logger: opts.logger.child({ component: 'http' }),
  });
  const adminAuth = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const retryAfter = guard.retryAfter(req.ip);
    if (retryAfter > 0) {
      await reply
        .code(Errors.RATE_LIMITED.status)
        .header('retry-after', String(Math.ceil(retryAfter / 1000)))
        .send(httpError('RATE_LIMITED', 'Too many failed admin tokens from this address; try again later').body);
      return;
    }
    const h = req.headers.authorization;
    const token = h?.startsWith('Bearer ') ? h.slice(7) : undefined;
    const expected = opts.adminToken();
    if (token === undefined || expected === '' || !opts.secretEquals(token, expected)) {
      guard.failed({ ip: req.ip, method: req.method, route: req.routeOptions.url ?? 'unmatched', reason: token === undefined ? 'missing' : 'wrong' });
      await reply
        .code(Errors.UNAUTHORIZED.status)
        .header('www-authenticate', 'Bearer realm="muster"')
        .send(httpError('UNAUTHORIZED', 'Send Authorization: Bearer <admin token>').body);
    }
  };

  const hub = mountDashboard(app, { opts, routes, adminAuth });

  const limiter = new IpRateLimiter(() => opts.scheduler.now());
  for (const r of routes) {
    const rl = r.rateLimit;
    const rateLimited = rl
      ? async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
          const retryAfter = limiter.take(rl.bucket, req.ip, rl.perMinute());
          if (retryAfter > 0) {
            await reply
              .code(Errors.RATE_LIMITED.status)
              .header('retry-after', String(Math.ceil(retryAfter / 1000)))
              .send(httpError('RATE_LIMITED', 'Too many requests from this address; slow down').body);
          }
        }
      : undefined;
    const refused = r.body ? bodyChecker(r.body) : undefined;
    app.route({
      method: r.method,
      url: r.url,
      ...(r.access === 'admin' ? { preHandler: adminAuth } : rateLimited ? { preHandler: rateLimited } : {}),
      handler: async (req, reply) => {
        const out = refused?.(req.body) ?? (await r.handler(toHttpRequest(req)));
        if (out.headers) reply.headers(out.headers);
        reply.code(out.status ?? 200);
        return out.body === undefined ? reply.send() : reply.send(out.body);
      },
    });
  }
  // Anything else under the admin prefix still needs the token first (no route discovery).
  app.all(`${ADMIN_PREFIX}/*`, { preHandler: adminAuth }, async (req, reply) =>
    reply.code(Errors.NOT_FOUND.status).send(httpError('NOT_FOUND', `no route ${req.method} ${req.url}`).body),
  );
  return app;
}

/**
 * Slow or silent HTTP clients are cut (408, then the socket is closed): headers must
 * arrive within `headersTimeout` and the whole request within `requestTimeout`. Node
 * checks them on an interval; it is kept well under the shorter timeout. Upgraded
 * (WebSocket) sockets are no longer HTTP requests and are not affected.
 * A kept-alive connection idle after a response is closed after `keepAliveTimeout`
 * (fastify's own default is 72 s, an idle fd held for free by anyone who asks once).
 */
function applyTimeouts(server: FastifyInstance['server'], t: HttpTimeouts): void {
  server.headersTimeout = t.headersTimeout;
  server.requestTimeout = t.requestTimeout;
  server.keepAliveTimeout = t.keepAliveTimeout;
  const shortest = Math.min(...[t.headersTimeout, t.requestTimeout].filter((ms) => ms > 0));
  // Read by Node when the server starts listening; @types/node declares it only as a createServer option.
  const checking = server as typeof server & { connectionsCheckingInterval: number };
  if (Number.isFinite(shortest)) checking.connectionsCheckingInterval = Math.min(1000, Math.max(10, Math.floor(shortest / 4)));
}

function toHttpRequest(req: FastifyRequest): HttpRequest {
  return {
    params: (req.params ?? {}) as Record<string, string>,
    query: (req.query ?? {}) as Record<string, string | undefined>,
    body: req.body,
    ip: req.ip,
    headers: req.headers,
  };
}

