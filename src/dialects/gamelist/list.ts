/**
 * The public list: the snapshot (rebuilt at most once a second), its cached pages, the
 * public and admin routes.
 */
import type { HttpReply, HttpRequest, HttpRoute } from '../../core/dialect.js';
import { buildSnapshot, hasPassword, parseFilters, parseListQuery, queryAll, queryPage, toNorthstar, type Snapshot } from './snapshot.js';
import { PAGE_CACHE_ENTRIES, PUBLIC_RATE_BUCKET, SNAPSHOT_MIN_AGE_MS, type Hub } from './types.js';
import { httpError } from '../../common/errors.js';
import type { ReplicaInfo } from './world-cluster.js';

/** The list changed (the world says so): the next request past a second rebuilds. */
export function changed(hub: Hub, change: 'listed' | 'refreshed' | 'unlisted', serverId: string): void {
  hub.dirty = true;
  if (change === 'listed') {
    if (hub.gone.delete(serverId)) hub.goneVersion++;
  } else if (change === 'unlisted' && hub.snap?.entry(serverId) && !hub.gone.has(serverId)) {
    hub.gone.add(serverId);
    hub.goneVersion++;
  }
}

/** The current snapshot, rebuilt first if something changed and the last build is a second old. */
export function snapshot(hub: Hub): Snapshot {
  const now = hub.now();
  if (!hub.snap || (hub.dirty && now - hub.snap.builtAt >= SNAPSHOT_MIN_AGE_MS)) {
    hub.snap = buildSnapshot(hub.replicas.size === 0 ? hub.listed.values() : [...hub.listed.values(), ...hub.replicas.values()], now);
    hub.gone.clear();
    hub.dirty = false;
    hub.builds++;
    hub.m.snapshotBuilds.inc();
  }
  return hub.snap;
}

export function listServers(hub: Hub, req: HttpRequest): HttpReply {
  hub.m.listRequests.inc({ route: '/v2/servers' });
  const q = parseListQuery(req.query);
  if (!q.ok) return httpError('BAD_REQUEST', q.detail);
  const snap = snapshot(hub);
  const cache = hub.pageCache;
  if (cache.snap !== snap || cache.goneVersion !== hub.goneVersion) {
    cache.snap = snap;
    cache.goneVersion = hub.goneVersion;
    cache.pages.clear();
  }
  const key = JSON.stringify(q.value);
  let body = cache.pages.get(key);
  if (body === undefined) {
    body = Buffer.from(JSON.stringify(queryPage(snap, q.value, hub.gone)));
    if (cache.pages.size >= PAGE_CACHE_ENTRIES) cache.pages.clear();
    cache.pages.set(key, body);
  }
  return json(body);
}

export function clientServers(hub: Hub, req: HttpRequest): HttpReply {
  hub.m.listRequests.inc({ route: '/client/servers' });
  const q = parseFilters(req.query);
  if (!q.ok) return httpError('BAD_REQUEST', q.detail);
  const snap = snapshot(hub);
  const plain = Object.keys(q.value.filters).length === 0 && q.value.sort === 'players';
  const cached = hub.clientCache;
  if (plain && cached && cached.snap === snap && cached.goneVersion === hub.goneVersion) return json(cached.body);
  const body = Buffer.from(JSON.stringify(queryAll(snap, q.value.filters, q.value.sort, hub.gone).map(toNorthstar)));
  if (plain) hub.clientCache = { snap, goneVersion: hub.goneVersion, body };
  return json(body);
}

export function adminList(hub: Hub): Array<Record<string, unknown>> {
  const row = (l: ReplicaInfo, instance: string, connectedAt: number): Record<string, unknown> => ({
    server_id: l.serverId,
    name: l.info.name,
    desc: l.info.desc,
    map: l.info.map,
    playlist: l.info.playlist,
    curPlayers: l.info.curPlayers,
    maxPlayers: l.info.maxPlayers,
    hasPassword: hasPassword(l.info),
    gameState: l.info.gameState,
    address: l.address,
    port: l.info.port,
    connectionId: l.conn,
    instance,
    connectedAt: new Date(connectedAt).toISOString(),
    registeredAt: new Date(l.registeredAt).toISOString(),
    lastSeen: new Date(l.lastRefresh).toISOString(),
  });
  const out = [...hub.listed.values()].map((l) => row(l, hub.instanceId, hub.connectedAt(l.conn) ?? l.registeredAt));
  // Another instance's socket: its opening time is not shared, its registration is.
  for (const r of hub.replicas.values()) out.push(row(r, r.instance, r.registeredAt));
  return out;
}

const publicServerSchema = {
  type: 'object',
  properties: {
    server_id: { type: 'string' },
    name: { type: 'string' },
    desc: { type: 'string' },
    map: { type: 'string' },
    playlist: { type: 'string' },
    curPlayers: { type: 'integer' },
    maxPlayers: { type: 'integer' },
    hasPassword: { type: 'boolean' },
    gameState: { type: 'integer' },
    region: { type: 'string' },
    lastSeen: { type: 'string', format: 'date-time' },
  },
};

export function gamelistRoutes(hub: Hub): HttpRoute[] {
  const rateLimit = { bucket: PUBLIC_RATE_BUCKET, perMinute: () => hub.cfg.publicRatePerIpPerMinute };
  const errorSchema = { type: 'object', properties: { error: { type: 'string' }, message: { type: 'string' } } };
  return [
    {
      method: 'GET',
      url: '/v2/servers',
      access: 'public',
      summary:
        'The public game server list: filters map, playlist, gameState, hasPassword, notFull, notEmpty, q; sort players|name|newest (full servers last); paging limit (≤1000), cursor',
      rateLimit,
      response: {
        oneOf: [
          {
            type: 'object',
            properties: {
              servers: { type: 'array', items: publicServerSchema },
              total: { type: 'integer' },
              nextCursor: { type: ['string', 'null'] },
            },
          },
          errorSchema,
        ],
      },
      handler: (req) => listServers(hub, req),
    },
    {
      method: 'GET',
      url: '/client/servers',
      access: 'public',
      summary: 'The public game server list in the shape Northstar clients read (same filters and sort, no paging)',
      rateLimit,
      response: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            id: { type: 'string' },
            name: { type: 'string' },
            description: { type: 'string' },
            map: { type: 'string' },
            playlist: { type: 'string' },
            playerCount: { type: 'integer' },
            maxPlayers: { type: 'integer' },
            hasPassword: { type: 'boolean' },
          },
        },
      },
      handler: (req) => clientServers(hub, req),
    },
    {
      method: 'POST',
      url: '/v2/servers/:server_id/join',
      access: 'public',
      summary: 'Ask a game server to let a player join: {sessionToken, username, clantag, password?} → {success, conv, error?}',
      rateLimit,
      response: {
        type: 'object',
        properties: {
          success: { type: 'boolean' },
          conv: { type: 'integer' },
          error: { type: 'object', properties: { type: { type: ['integer', 'string'] }, msg: { type: 'string' } } },
        },
      },
      handler: (req) => hub.join(req),
    },
    {
      method: 'GET',
      url: '/api/v1/gamelist/servers',
      access: 'admin',
      summary: "Every listed game server (on every instance, in cluster mode), live, with its address, connection id and instance",
      response: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            ...publicServerSchema.properties,
            address: { type: 'string' },
            port: { type: 'integer' },
            connectionId: { type: 'string' },
            instance: { type: 'string' },
            connectedAt: { type: 'string', format: 'date-time' },
            registeredAt: { type: 'string', format: 'date-time' },
          },
        },
      },
      handler: () => ({ body: adminList(hub) }),
    },
  ];
}

function json(body: string | Buffer): HttpReply {
  return { body, headers: { 'content-type': 'application/json; charset=utf-8' } };
}
