/**
 * The game list across instances (cluster mode), as part of the pure world.
 *
 * - Replicas: each instance announces its listings as they are listed or refreshed
 *   (`up`) and unlisted (`down`), and sends all of them (`sync`) to an instance that comes
 *   up (which answers with its own). Every world holds the other instances' listings as
 *   replicas, so the public list, the admin list and the limits cover the cluster; a dead
 *   instance's replicas go when its peer is reported gone (presence, `presenceTtl`).
 *   A replica carries whether its server has a password, never the password.
 * - Joins: a join for a replica goes to the instance holding the game server's socket
 *   (`join`), which runs it as one of its own (password check, conv, the game server's
 *   answer, its joinTimeout) and sends the answer back (`joined`). The asking instance
 *   answers 504 at its own joinTimeout if nothing comes back, and 502 if the instance
 *   goes away first.
 * - Kept server ids: when a socket closes, its instance tells the others (`down` with
 *   `keep`, a digest of the reservation key: regToken, name, port and address), and each
 *   keeps the id for that digest for registrationTtl, so a game server that reconnects to
 *   another instance keeps its server_id too. Whoever gives a kept id back says so
 *   (`claim`), and every instance forgets it.
 * - The world knows no instance id of its own and no broker: messages come in as
 *   `remote` and `peer` events and go out as `cluster` effects (the glue carries them).
 */
import { createHash } from 'node:crypto';
import { JoinFailure, type JoinAnswer } from '../../protocols/gamelist/api.js';
import type { ServerInfo } from '../../protocols/gamelist/messages.js';
import { hasPassword, type ListedServer } from './snapshot.js';

/** A listing as it crosses to other instances (the password masked). */
export interface ReplicaInfo extends ListedServer {
  /** The game server's connection id on its instance. */
  readonly conn: string;
  readonly address: string;
}

export interface Replica extends ReplicaInfo {
  readonly instance: string;
}

/** Who asked for a join run here: the instance and its forward id. */
export interface JoinOrigin {
  readonly instance: string;
  readonly id: string;
}

export type ClusterMsg =
  | { readonly t: 'up'; readonly s: ReplicaInfo }
  | { readonly t: 'down'; readonly id: string; readonly keep?: string }
  | { readonly t: 'claim'; readonly keep: string }
  | { readonly t: 'sync'; readonly servers: readonly ReplicaInfo[]; readonly ask: boolean }
  | { readonly t: 'join'; readonly id: string; readonly serverId: string; readonly body: unknown }
  | { readonly t: 'joined'; readonly id: string; readonly status: number; readonly body: JoinAnswer };

export interface ClusterState {
  /** Other instances' listings, by server id. */
  readonly replicas: Map<string, Replica>;
  /** Replica server ids by instance. */
  readonly byInstance: Map<string, Set<string>>;
  /** Replicas per game server address (for maxServersPerIp across the cluster). */
  readonly perIp: Map<string, number>;
  /** Joins sent to another instance, by forward id. */
  readonly forwarded: Map<string, { readonly call: string; readonly instance: string }>;
  /** Joins run here for another instance: their call → where the answer goes. */
  readonly answerTo: Map<string, JoinOrigin>;
  /** Server ids another instance keeps for a reconnecting game server, by key digest. */
  readonly kept: Map<string, string>;
  nextForward: number;
}

/** What a remote message may need of the rest of the world. */
export interface RemoteEnv {
  readonly now: number;
  readonly registrationTtl: number;
  /** Listed or held here. */
  readonly isLocal: (serverId: string) => boolean;
  readonly local: () => Iterable<ReplicaInfo>;
  /** Servers listed here (for `list` effects). */
  readonly servers: number;
  /** Forgets an id kept here for the key with this digest. */
  readonly dropReserved: (digest: string) => void;
}

/** A `cluster` effect: to one instance, or (`null`) to every other one. */
export interface ClusterEffect {
  readonly type: 'cluster';
  readonly to: string | null;
  readonly msg: ClusterMsg;
}

/** What this module asks of the world's effect list. */
export type ClusterFx =
  | ClusterEffect
  | { readonly type: 'list'; readonly change: 'listed' | 'refreshed' | 'unlisted'; readonly serverId: string; readonly servers: number }
  | { readonly type: 'timer'; readonly key: { readonly kind: 'forward'; readonly id: string } | { readonly kind: 'kept'; readonly key: string }; readonly at: number | null }
  | { readonly type: 'reply'; readonly call: string; readonly status: number; readonly body: unknown }
  | { readonly type: 'count'; readonly metric: 'joins'; readonly result: 'timeout' | 'server_gone' | 'shutting_down' }
  | { readonly type: 'log'; readonly level: 'debug' | 'warn'; readonly msg: string; readonly data?: Record<string, unknown> };

export function initialCluster(): ClusterState {
  return { replicas: new Map(), byInstance: new Map(), perIp: new Map(), forwarded: new Map(), answerTo: new Map(), kept: new Map(), nextForward: 0 };
}

/** The reservation key as it crosses: a digest (the key holds the regToken). */
export function keepDigest(key: string): string {
  return createHash('sha256').update(key).digest('base64url');
}

/**
 * A game server registering here may take an id another instance kept for it (unless
 * that server is listed again meanwhile). Every instance is told to forget it.
 */
export function claimKept(c: ClusterState, digest: string, out: ClusterFx[]): string | undefined {
  out.push({ type: 'cluster', to: null, msg: { t: 'claim', keep: digest } });
  const id = c.kept.get(digest);
  if (id === undefined) return undefined;
  c.kept.delete(digest);
  out.push({ type: 'timer', key: { kind: 'kept', key: digest }, at: null });
  return c.replicas.has(id) ? undefined : id;
}

export function keptExpired(c: ClusterState, digest: string): void {
  c.kept.delete(digest);
}

/** A password's value never leaves its instance: replicas only know that there is one. */
export const MASKED_PASSWORD = '*';

export function replicaInfo(l: ReplicaInfo): ReplicaInfo {
  const { password: _password, ...rest } = l.info;
  const info: ServerInfo = hasPassword(l.info) ? { ...rest, password: MASKED_PASSWORD } : rest;
  return { serverId: l.serverId, info, registeredAt: l.registeredAt, lastRefresh: l.lastRefresh, conn: l.conn, address: l.address };
}

/** The local listings, as a `sync` carries them. */
export function syncMsg(local: Iterable<ReplicaInfo>, ask: boolean): ClusterMsg {
  return { t: 'sync', servers: [...local].map(replicaInfo), ask };
}

/** Servers listed cluster-wide, and those from `address`, as the limits count them. */
export function replicaCounts(c: ClusterState, address: string): { servers: number; fromAddress: number } {
  return { servers: c.replicas.size, fromAddress: c.perIp.get(address) ?? 0 };
}

/**
 * Another instance came up (or back after an outage): it gets this one's listings and
 * is asked for its own. Gone: its replicas leave the list, joins sent to it fail.
 */
export function onPeer(c: ClusterState, instance: string, up: boolean, local: Iterable<ReplicaInfo>, servers: number, out: ClusterFx[]): void {
  if (up) {
    out.push({ type: 'cluster', to: instance, msg: syncMsg(local, true) });
    return;
  }
  for (const id of [...(c.byInstance.get(instance) ?? [])]) dropReplica(c, id, servers, out);
  for (const [id, f] of [...c.forwarded]) {
    if (f.instance !== instance) continue;
    c.forwarded.delete(id);
    out.push({ type: 'timer', key: { kind: 'forward', id }, at: null });
    out.push({ type: 'count', metric: 'joins', result: 'server_gone' });
    out.push(failure(f.call, 502, JoinFailure.SERVER_GONE, "The game server's instance went away before answering"));
  }
  // Joins run here for it stay until they end (each does: answer, timeout, socket gone
  // or shutdown); their answers then go to a topic nobody hears.
}

/** A message from another instance (not `join`: the glue feeds that as a join event). */
export function onRemote(c: ClusterState, from: string, msg: ClusterMsg, env: RemoteEnv, out: ClusterFx[]): void {
  switch (msg.t) {
    case 'up':
      addReplica(c, from, msg.s, env, out);
      return;
    case 'down':
      if (c.replicas.get(msg.id)?.instance !== from) return;
      dropReplica(c, msg.id, env.servers, out);
      if (msg.keep !== undefined) {
        c.kept.set(msg.keep, msg.id);
        out.push({ type: 'timer', key: { kind: 'kept', key: msg.keep }, at: env.now + env.registrationTtl });
      }
      return;
    case 'claim':
      env.dropReserved(msg.keep);
      if (c.kept.delete(msg.keep)) out.push({ type: 'timer', key: { kind: 'kept', key: msg.keep }, at: null });
      return;
    case 'sync': {
      // The whole truth about `from`: what it no longer lists goes (it may have missed some `down`s).
      const keep = new Set(msg.servers.map((s) => s.serverId));
      for (const id of [...(c.byInstance.get(from) ?? [])]) if (!keep.has(id)) dropReplica(c, id, env.servers, out);
      for (const s of msg.servers) addReplica(c, from, s, env, out);
      if (msg.ask) out.push({ type: 'cluster', to: from, msg: syncMsg(env.local(), false) });
      return;
    }
    case 'joined': {
      const f = c.forwarded.get(msg.id);
      if (!f || f.instance !== from) return;
      c.forwarded.delete(msg.id);
      out.push({ type: 'timer', key: { kind: 'forward', id: msg.id }, at: null });
      out.push({ type: 'reply', call: f.call, status: msg.status, body: msg.body });
      return;
    }
    case 'join':
      return;
  }
}

/** Sends a join for replica `r` to its instance; answered 504 at `deadline` if it does not answer. */
export function forwardJoin(c: ClusterState, r: Replica, call: string, body: unknown, deadline: number, out: ClusterFx[]): void {
  const id = String(++c.nextForward);
  c.forwarded.set(id, { call, instance: r.instance });
  out.push({ type: 'timer', key: { kind: 'forward', id }, at: deadline });
  out.push({ type: 'cluster', to: r.instance, msg: { t: 'join', id, serverId: r.serverId, body } });
}

export function forwardTimedOut(c: ClusterState, id: string, joinTimeout: number, out: ClusterFx[]): void {
  const f = c.forwarded.get(id);
  if (!f) return;
  c.forwarded.delete(id);
  out.push({ type: 'count', metric: 'joins', result: 'timeout' });
  out.push(failure(f.call, 504, JoinFailure.TIMEOUT, `The game server did not answer within ${joinTimeout} ms`));
}

/** This instance stops: joins it sent away get 503. */
export function shutdownCluster(c: ClusterState, out: ClusterFx[]): void {
  for (const [id, f] of c.forwarded) {
    out.push({ type: 'timer', key: { kind: 'forward', id }, at: null });
    out.push({ type: 'count', metric: 'joins', result: 'shutting_down' });
    out.push(failure(f.call, 503, JoinFailure.SHUTTING_DOWN, 'The masterserver is shutting down'));
  }
  c.forwarded.clear();
  for (const key of c.kept.keys()) out.push({ type: 'timer', key: { kind: 'kept', key }, at: null });
  c.kept.clear();
}

/**
 * Answers to joins run for another instance go back to it (as `joined`) instead of to a
 * local call; `fx` is rewritten in place.
 */
export function routeAnswers<E extends { readonly type: string }>(c: ClusterState, fx: E[]): void {
  for (let i = 0; i < fx.length; i++) {
    const e = fx[i] as unknown as { type: string; call?: string; status?: number; body?: unknown };
    if (e.type !== 'reply' || e.call === undefined) continue;
    const o = c.answerTo.get(e.call);
    if (!o) continue;
    c.answerTo.delete(e.call);
    const msg: ClusterMsg = { t: 'joined', id: o.id, status: e.status ?? 500, body: e.body as JoinAnswer };
    fx[i] = { type: 'cluster', to: o.instance, msg } as unknown as E;
  }
}

function addReplica(c: ClusterState, instance: string, s: ReplicaInfo, env: RemoteEnv, out: ClusterFx[]): void {
  if (env.isLocal(s.serverId)) {
    out.push({ type: 'log', level: 'warn', msg: 'gamelist: another instance lists a server id listed here; ignored', data: { server: s.serverId, instance } });
    return;
  }
  const old = c.replicas.get(s.serverId);
  if (old) unindex(c, old);
  const r: Replica = { ...s, instance };
  c.replicas.set(s.serverId, r);
  let ids = c.byInstance.get(instance);
  if (!ids) c.byInstance.set(instance, (ids = new Set()));
  ids.add(s.serverId);
  c.perIp.set(s.address, (c.perIp.get(s.address) ?? 0) + 1);
  out.push({ type: 'list', change: old ? 'refreshed' : 'listed', serverId: s.serverId, servers: env.servers });
}

function dropReplica(c: ClusterState, serverId: string, servers: number, out: ClusterFx[]): void {
  const r = c.replicas.get(serverId);
  if (!r) return;
  c.replicas.delete(serverId);
  unindex(c, r);
  out.push({ type: 'list', change: 'unlisted', serverId, servers });
}

function unindex(c: ClusterState, r: Replica): void {
  const ids = c.byInstance.get(r.instance);
  ids?.delete(r.serverId);
  if (ids?.size === 0) c.byInstance.delete(r.instance);
  const n = (c.perIp.get(r.address) ?? 1) - 1;
  if (n > 0) c.perIp.set(r.address, n);
  else c.perIp.delete(r.address);
}

function failure(call: string, status: number, type: JoinFailure, msg: string): ClusterFx {
  const body: JoinAnswer = { success: false, error: { type, msg } };
  return { type: 'reply', call, status, body };
}
