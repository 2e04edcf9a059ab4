import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';
import type { Dialect, HttpRoute } from '../core/dialect.js';
import type { Scheduler } from '../core/scheduler.js';
import type { Transport } from '../transport/upgrade.js';
import { EventHub, EVENTS_URL } from './events.js';
import { Errors, httpError } from '../common/errors.js';
import { clusterPeers, instancesSchema, type ClusterAdminOptions } from './cluster-admin.js';

/**
 * The dashboard: a static page (built into dist/dashboard by `npm run build`) served at
 * `/`, plus the two admin endpoints it needs beyond the dialects' own: the peer list
 * (`GET /api/v1/peers`) and the live feed (`GET /api/v1/events`). The page holds no data
 * of its own; everything it shows comes through the admin API with the admin token.
 */

export interface DashboardOptions {
  version: string;
  dialects: readonly Dialect[];
  transport: () => Transport | undefined;
  scheduler: Scheduler;
  adminToken: () => string;
  secretEquals: (a: string, b: string) => boolean;
}

export const PEERS_URL = '/api/v1/peers';

const peerSchema = {
  type: 'object',
  required: ['id', 'dialect', 'identity', 'remoteAddress', 'connectedAt', 'lastSeen', 'latencyMs', 'instance'],
  properties: {
    id: { type: 'string', description: 'connection id (DELETE /api/v1/connections/{id} kicks it)' },
    dialect: { type: 'string' },
    identity: { type: ['string', 'null'], description: 'what the peer identified as (null before it has)' },
    remoteAddress: { type: 'string' },
    connectedAt: { type: 'string', format: 'date-time' },
    lastSeen: { type: 'string', format: 'date-time', description: 'last frame or pong from the peer' },
    latencyMs: {
      type: ['number', 'null'],
      description: 'round trip of the last answered WebSocket ping (sharding: sent with each HEARTBEAT ACK); null until measured or where the dialect does not ping',
    },
    instance: { type: 'string', description: 'the instance holding the connection' },
  },
};

/** Admin routes the dashboard adds (documented in the OpenAPI document like every other). */
export function dashboardRoutes(opts: DashboardOptions, cluster: ClusterAdminOptions): HttpRoute[] {
  return [
    {
      method: 'GET',
      url: PEERS_URL,
      access: 'admin',
      summary: 'Every connected peer, on every instance, with its identity, address, connection time, last ping round trip and instance; `?dialect=NAME` for one dialect',
      response: {
        type: 'object',
        properties: {
          counts: { type: 'object', additionalProperties: { type: 'integer' }, description: 'open connections per dialect, summed over the instances that answered' },
          peers: { type: 'array', items: peerSchema },
          instances: instancesSchema,
        },
      },
      handler: async (req) => {
        const dialect = req.query.dialect;
        if (dialect !== undefined && !opts.dialects.some((d) => d.name === dialect)) {
          const names = opts.dialects.map((d) => d.name).join(', ');
          return httpError('BAD_REQUEST', `"dialect" must be one of: ${names}`);
        }
        return { body: await clusterPeers(cluster, dialect) };
      },
    },
  ];
}

interface Asset {
  readonly type: string;
  readonly body: Buffer;
}

/** The built page: dist/dashboard next to dist/http, or (running from src) the repo's dist/dashboard. */
function loadAssets(): Map<string, Asset> | undefined {
  const candidates = [new URL('../dashboard/', import.meta.url), new URL('../../dist/dashboard/', import.meta.url)];
  const dir = candidates.map((u) => fileURLToPath(u)).find((d) => existsSync(`${d}index.html`));
  if (dir === undefined) return undefined;
  const files: Array<[string, string, string]> = [
    ['/', 'index.html', 'text/html; charset=utf-8'],
    ['/dashboard/app.js', 'app.js', 'text/javascript; charset=utf-8'],
    ['/dashboard/app.css', 'app.css', 'text/css; charset=utf-8'],
  ];
  const out = new Map<string, Asset>();
  for (const [url, file, type] of files) {
    if (existsSync(dir + file)) out.set(url, { type, body: readFileSync(dir + file) });
  }
  return out;
}

/** Adds the feed and the peer list's query parameter to the OpenAPI document (http/openapi.ts). */
export function documentDashboard(openapi: Record<string, unknown>, opts: Pick<DashboardOptions, 'dialects'>, hub: EventHub): void {
  const paths = openapi.paths as Record<string, Record<string, Record<string, unknown>> | undefined>;
  paths[EVENTS_URL] = hub.openApiPath() as Record<string, Record<string, unknown>>;
  const peers = paths[PEERS_URL]?.get;
  if (peers) {
    peers.parameters = [{ name: 'dialect', in: 'query', required: false, description: 'only this dialect (400 if it is not mounted)', schema: { type: 'string', enum: opts.dialects.map((d) => d.name) } }];
    (peers.responses as Record<string, unknown>)['400'] = { description: 'Unknown dialect' };
  }
}

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-cache',
};

/**
 * Mounts the page and the feed. `/` answers the page to a browser (Accept: text/html)
 * and the small JSON index to everything else, as before the dashboard existed.
 * Returns the feed (the server ends its streams at shutdown).
 */
export function mountDashboard(
  app: FastifyInstance,
  ctx: { opts: DashboardOptions; routes: readonly HttpRoute[]; adminAuth: preHandlerAsyncHookHandler },
): EventHub {
  const { opts } = ctx;
  const hub = new EventHub({
    routes: ctx.routes,
    scheduler: opts.scheduler,
    adminToken: opts.adminToken,
    secretEquals: opts.secretEquals,
    adminAuth: ctx.adminAuth,
  });
  hub.mount(app);
  // Before the listener closes: an open stream would otherwise hold it open.
  app.addHook('preClose', async () => hub.close());

  const assets = loadAssets();
  const index = (): Record<string, unknown> => ({
    name: 'muster',
    version: opts.version,
    dashboard: assets ? '/' : null,
    health: '/healthz',
    metrics: '/metrics',
    admin: '/api/v1',
    websockets: Object.fromEntries(opts.dialects.map((d) => [d.name, d.path])),
  });
  app.get('/', async (req, reply) => {
    const page = assets?.get('/');
    const accept = req.headers.accept ?? '';
    if (!page || !accept.includes('text/html')) return index();
    return reply.headers(SECURITY_HEADERS).type(page.type).send(page.body);
  });
  for (const url of ['/dashboard/app.js', '/dashboard/app.css']) {
    app.get(url, async (_req, reply) => {
      const a = assets?.get(url);
      if (!a) return reply.code(Errors.NOT_FOUND.status).send(httpError('NOT_FOUND', 'the dashboard is not built (npm run build)').body);
      return reply.headers(SECURITY_HEADERS).type(a.type).send(a.body);
    });
  }
  return hub;
}
