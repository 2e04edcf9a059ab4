import type { Broker } from '../cluster/broker.js';
import { entry, instancesOf, type InstanceEntry } from '../cluster/admin-view.js';
import type { HttpReply, HttpRequest } from '../core/dialect.js';
import type { Transport } from '../transport/upgrade.js';
import { CloseCode, httpError } from '../common/errors.js';
import { KICK_REASON } from '../transport/upgrade.js';

/**
 * The generic admin views of the whole cluster: connections, peers, status and kick.
 * Each instance answers, over the Broker (cluster/gather.ts), with what it holds itself;
 * the instance serving the request merges the answers. Every merged answer says which
 * instances answered (`instances`), so a partial answer is visible: an instance that
 * did not answer within the gather's timeout (1 s) is listed with `answered: false`.
 * Without cluster mode the one instance answers alone, in the same shape.
 */

export const STATUS_KIND = 'admin.status';
export const PEERS_KIND = 'admin.peers';
/** An operator's `?reason=` is logged up to this many characters. */
const MAX_NOTE = 200;

export interface PeerRow {
  id: string;
  dialect: string;
  identity: string | null;
  remoteAddress: string;
  connectedAt: string;
  lastSeen: string;
  latencyMs: number | null;
  instance: string;
}

export interface NodeStatus {
  version: string;
  uptimeSeconds: number;
  connections: Record<string, number>;
}

export interface ClusterAdminOptions {
  broker: Broker;
  transport: () => Transport | undefined;
  version: string;
}

/** This instance's peers (one dialect, or all). */
export function localPeers(transport: Transport | undefined, instance: string, dialect?: string): { counts: Record<string, number>; peers: PeerRow[] } {
  const peers = (transport?.connections() ?? [])
    .filter((c) => dialect === undefined || c.dialect === dialect)
    .map((c) => ({
      id: c.id,
      dialect: c.dialect,
      identity: c.identity ?? null,
      remoteAddress: c.remoteAddress,
      connectedAt: new Date(c.connectedAt).toISOString(),
      lastSeen: new Date(c.lastSeen).toISOString(),
      latencyMs: c.latencyMs,
      instance,
    }));
  return { counts: transport?.countByDialect() ?? {}, peers };
}

/**
 * Answers the other instances' questions on this one, and closes connections here when
 * asked (the transport's kick: the dialect's goodbye, logged with who asked and why).
 * Returns a function that stops answering.
 */
export function answerClusterAdmin(o: ClusterAdminOptions): () => void {
  const here = o.broker.instanceId;
  o.broker.setCloser((id, order) => {
    const t = o.transport();
    if (!t || (order.scope !== undefined && t.get(id)?.dialect.name !== order.scope)) return false;
    return t.kick(id, { by: order.by, note: order.note });
  });
  const offs = [
    o.broker.answer(STATUS_KIND, (): NodeStatus => ({ version: o.version, uptimeSeconds: Math.round(process.uptime()), connections: o.transport()?.countByDialect() ?? {} })),
    o.broker.answer(PEERS_KIND, (q) => {
      const dialect = (q as { dialect?: unknown } | null)?.dialect;
      return localPeers(o.transport(), here, typeof dialect === 'string' ? dialect : undefined);
    }),
  ];
  return () => offs.forEach((off) => off());
}

/** Every instance's peers, merged (oldest first) with counts summed per dialect. */
export async function clusterPeers(o: ClusterAdminOptions, dialect?: string): Promise<{ counts: Record<string, number>; peers: PeerRow[]; instances: InstanceEntry[] }> {
  const g = await o.broker.gather(PEERS_KIND, dialect !== undefined ? { dialect } : {});
  const counts: Record<string, number> = {};
  const peers: PeerRow[] = [];
  const instances = instancesOf(g, o.broker.instanceId);
  for (const i of instances) {
    const v = i.value as { counts?: Record<string, number>; peers?: PeerRow[] } | undefined;
    for (const [d, n] of Object.entries(v?.counts ?? {})) counts[d] = (counts[d] ?? 0) + n;
    peers.push(...(v?.peers ?? []));
  }
  peers.sort((a, b) => a.connectedAt.localeCompare(b.connectedAt) || a.id.localeCompare(b.id));
  return { counts, peers, instances: instances.map(entry) };
}

/** Every instance's status (version, uptime, connections per dialect), with the totals. */
export async function clusterStatus(o: ClusterAdminOptions): Promise<{ connections: Record<string, number>; instances: Array<InstanceEntry & Partial<NodeStatus>> }> {
  const g = await o.broker.gather(STATUS_KIND, {});
  const connections: Record<string, number> = {};
  const instances = instancesOf(g, o.broker.instanceId).map((i) => {
    const v = i.value as NodeStatus | undefined;
    if (!v) return entry(i);
    for (const [d, n] of Object.entries(v.connections)) connections[d] = (connections[d] ?? 0) + n;
    return { ...entry(i), version: v.version, uptimeSeconds: v.uptimeSeconds, connections: v.connections };
  });
  return { connections, instances };
}

/** `DELETE /api/v1/connections/:id[?reason=]`: the connection is closed wherever it is. */
export async function kickAnywhere(o: ClusterAdminOptions, req: HttpRequest): Promise<HttpReply> {
  const id = req.params.id ?? '';
  const reason = req.query.reason;
  const note = typeof reason === 'string' && reason !== '' ? reason.slice(0, MAX_NOTE) : undefined;
  const by = `admin API from ${req.ip} via ${o.broker.instanceId}`;
  const r = await o.broker.closeConn(id, { code: CloseCode.POLICY_VIOLATION, reason: KICK_REASON, by, ...(note !== undefined ? { note } : {}) });
  if (r.closed) return { status: 200, body: { kicked: id, instance: r.instance } };
  if (!r.reachable) return httpError('UNAVAILABLE', `no connection ${id} on this instance, and the other instances cannot be asked (cluster unreachable: Redis down); retry`);
  if (r.missing.length > 0) return httpError('UNAVAILABLE', `no connection ${id} on the instances that answered; ${r.missing.join(', ')} did not answer in time; retry`);
  return httpError('NOT_FOUND', `no connection ${id} on any instance`);
}

/** Answers and errors the OpenAPI document adds for the kick. */
export function documentClusterAdmin(paths: Record<string, Record<string, Record<string, unknown>> | undefined>): void {
  const kick = paths['/api/v1/connections/{id}']?.delete;
  if (kick) {
    kick.parameters = [
      ...((kick.parameters as unknown[] | undefined) ?? []),
      { name: 'reason', in: 'query', required: false, description: `why, for the log line on the instance that closes it (first ${MAX_NOTE} characters)`, schema: { type: 'string' } },
    ];
    Object.assign(kick.responses as Record<string, unknown>, {
      '404': { description: 'No instance has this connection (NOT_FOUND)' },
      '503': { description: 'Not on this instance, and the others cannot be asked (Redis down) or did not all answer in time (UNAVAILABLE); retry' },
    });
  }
}

export const instancesSchema = {
  type: 'array',
  description: 'every instance asked, this one first; `answered: false` marks a partial answer (that instance is missing from the lists and totals)',
  items: {
    type: 'object',
    required: ['id', 'answered'],
    properties: {
      id: { type: 'string', description: 'instance id' },
      answered: { type: 'boolean' },
      error: { type: 'string', description: 'why it did not answer' },
    },
  },
};
