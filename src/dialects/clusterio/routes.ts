/**
 * The admin API's Clusterio routes: the slaves the master knows and the instances with
 * their configs (numbers JS cannot hold exactly are sent as their digits). In cluster
 * mode they cover every instance: the registry is shared, and slaves connected to
 * another instance are shown connected, with that instance's id.
 */
import type { HttpRoute } from '../../core/dialect.js';
import { idForHttp, isLosslessNumber, type LJson } from '../../protocols/clusterio/codec.js';
import { assignedSlave, instanceName } from '../../protocols/clusterio/config.js';
import { sortedInstances, sortedSlaves } from './world/messages.js';
import type { ClusterioWorld } from './world/state.js';

/** What the routes read: the world, and a socket's remote address. */
export interface RouteView {
  world(): ClusterioWorld;
  remoteAddress(conn: string): string | undefined;
}

export function clusterioRoutes(view: RouteView): HttpRoute[] {
  return [
    {
      method: 'GET',
      url: '/api/v1/clusterio/slaves',
      access: 'admin',
      summary: 'Every Clusterio slave the master knows, and whether it is connected',
      response: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            id: { type: ['integer', 'string'] },
            name: { type: 'string' },
            agent: { type: 'string' },
            version: { type: 'string' },
            connected: { type: 'boolean' },
            mode: { type: ['string', 'null'], enum: ['seed', 'session', null] },
            attached: { type: 'boolean' },
            remoteAddress: { type: ['string', 'null'] },
            instances: { type: 'integer' },
            instance: { type: 'string', description: 'Cluster mode: the Muster instance the slave is connected to, when it is another one' },
          },
        },
      },
      handler: () => {
        const w = view.world();
        const hosted = new Map<string, number>();
        for (const rec of w.registry.instances.values()) {
          const s = assignedSlave(rec.config);
          if (s !== null) hosted.set(s, (hosted.get(s) ?? 0) + 1);
        }
        return {
          body: sortedSlaves(w).map((s) => {
            const p = w.slaves.get(s.id);
            const r = p ? undefined : w.replicas.get(s.id);
            if (r) {
              return {
                id: idForHttp(s.id),
                name: s.name,
                agent: s.agent,
                version: s.version,
                connected: true,
                mode: r.mode,
                attached: r.attached,
                remoteAddress: null,
                instances: hosted.get(s.id) ?? 0,
                instance: r.instance,
              };
            }
            return {
              id: idForHttp(s.id),
              name: s.name,
              agent: s.agent,
              version: s.version,
              connected: p !== undefined,
              mode: p?.mode ?? null,
              attached: p?.link !== undefined,
              remoteAddress: (p?.link && view.remoteAddress(p.link.conn)) ?? null,
              instances: hosted.get(s.id) ?? 0,
            };
          }),
        };
      },
    },
    {
      method: 'GET',
      url: '/api/v1/clusterio/instances',
      access: 'admin',
      summary: 'Every Clusterio instance, its slave, its last reported status and its config',
      response: {
        type: 'array',
        items: {
          type: 'object',
          properties: {
            id: { type: ['integer', 'string'] },
            name: { type: 'string' },
            assigned_slave: { type: ['integer', 'string', 'null'] },
            slave_connected: { type: 'boolean' },
            status: { type: 'string' },
            serialized_config: { type: 'object' },
          },
        },
      },
      handler: () => ({
        body: sortedInstances(view.world()).map(([id, rec]) => {
          const slave = assignedSlave(rec.config);
          return {
            id: idForHttp(id),
            name: instanceName(rec.config),
            assigned_slave: slave === null ? null : idForHttp(slave),
            slave_connected: slave !== null && (view.world().slaves.has(slave) || view.world().replicas.has(slave)),
            status: rec.status ?? 'unknown',
            serialized_config: toHttpJson(rec.config as unknown as LJson),
          };
        }),
      }),
    },
  ];
}

/** A tree for a JSON body: numbers that JS cannot hold exactly are sent as their digits (a string). */
function toHttpJson(v: LJson): unknown {
  if (Array.isArray(v)) return v.map(toHttpJson);
  if (isLosslessNumber(v)) return isSafeDecimal(v.value) ? Number(v.value) : v.value;
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toHttpJson(x)]));
  return v;
}

function isSafeDecimal(text: string): boolean {
  const n = Number(text);
  if (!Number.isFinite(n)) return false;
  // Integers must be exact; other numbers are as exact as a double can be anyway.
  return /^-?\d+$/.test(text) ? Number.isSafeInteger(n) : true;
}

