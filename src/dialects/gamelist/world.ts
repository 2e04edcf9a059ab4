import type { Stepped } from '../../core/runtime.js';
import { JoinFailure, type JoinAnswer } from '../../protocols/gamelist/api.js';
import {
  canonicalInt64,
  encodeJoin,
  encodeRegistrationError,
  encodeResponse,
  GamelistClose,
  INT64_MAX,
  MessageType,
  RegistrationError,
  UINT32_MAX,
  type RegisterMessage,
  type ResponseMessage,
  type ServerInfo,
} from '../../protocols/gamelist/messages.js';
import { initialState, step as connStep, type ConnState, type GamelistEvent } from './machine.js';
import { hasPassword } from './snapshot.js';
import type { JoinResult } from './types.js';
import * as cluster from './world-cluster.js';
import type { CallReply, GamelistWorld, Listing, PeerRec, TimerKey, WorldConfig, WorldEffect, WorldEvent } from './world-types.js';

/**
 * The gamelist world, as a pure step: every game server socket's protocol state
 * (machine.ts), the listed servers with their TTL, the limits, the server ids (fresh, or
 * kept for a reconnecting server), the registration deadline, ping/pong liveness and the
 * player joins waiting for their game server's answer. Deadlines are typed timers; a
 * join is a call answered by a `reply` effect naming it (at once for 404/403/400, later
 * for the game server's answer, its timeout or its socket going away).
 *
 * Randomness (server ids, convs) comes from the config; the step does no I/O and reads
 * no clock. The state is updated in place (its maps are not copied per frame).
 *
 * The public list snapshot (snapshot.ts) is a read model outside the world: the world
 * says when a server is listed, refreshed or unlisted (`list` effects) and holds the
 * listings (`listed`) the snapshot is built from.
 *
 * In cluster mode (`cluster` set) it also holds the other instances' listings and sends
 * joins for them to their instance (world-cluster.ts).
 */

export * from './world-types.js';

export function step(w: GamelistWorld, ev: WorldEvent, cfg: WorldConfig): Stepped<GamelistWorld, WorldEffect> {
  const fx: WorldEffect[] = [];
  switch (ev.type) {
    case 'open':
      w.peers.set(ev.conn, { conn: ev.conn, address: ev.address, state: initialState, serverId: null, detached: false });
      fx.push({ type: 'timer', key: { kind: 'ping', conn: ev.conn }, at: ev.now + cfg.pingInterval });
      fx.push({ type: 'timer', key: { kind: 'deadline', conn: ev.conn }, at: ev.now + cfg.registrationTtl });
      break;
    case 'frame':
      onConn(w, ev.conn, { type: 'frame', data: ev.data, binary: ev.binary }, ev.now, cfg, fx);
      break;
    case 'pong':
      onConn(w, ev.conn, { type: 'pong' }, ev.now, cfg, fx);
      break;
    case 'close':
      closeServer(w, ev.conn, ev.code, ev.reason, ev.now, cfg, fx);
      break;
    case 'closed': {
      const p = w.peers.get(ev.conn);
      if (!p) break;
      setPhase(w, p, 'closed');
      detach(w, ev.conn, ev.now, cfg, fx);
      w.peers.delete(ev.conn);
      break;
    }
    case 'timer':
      onTimer(w, ev.key, ev.now, cfg, fx);
      break;
    case 'join':
      join(w, ev, cfg, fx);
      break;
    case 'shutdown':
      for (const [id, j] of w.joins) {
        fx.push({ type: 'timer', key: { kind: 'join', id }, at: null });
        w.convs.delete(j.conv);
        fx.push({ type: 'count', metric: 'joins', result: 'shutting_down' });
        fx.push(failure(j.call, 503, JoinFailure.SHUTTING_DOWN, 'The masterserver is shutting down', j.conv));
      }
      w.joins.clear();
      for (const key of w.reserved.keys()) fx.push({ type: 'timer', key: { kind: 'reserve', key }, at: null });
      w.reserved.clear();
      cluster.shutdownCluster(w.cluster, fx as cluster.ClusterFx[]);
      break;
    case 'set-request-id':
      w.nextRequestId = ev.next;
      break;
    case 'remote': {
      const env: cluster.RemoteEnv = {
        now: ev.now,
        registrationTtl: cfg.registrationTtl,
        isLocal: (id) => w.held.has(id),
        local: () => w.listed.values(),
        servers: w.listed.size,
        dropReserved: (digest) => dropReserved(w, digest, fx),
      };
      cluster.onRemote(w.cluster, ev.from, ev.msg, env, fx as cluster.ClusterFx[]);
      break;
    }
    case 'peer':
      cluster.onPeer(w.cluster, ev.instance, ev.up, w.listed.values(), w.listed.size, fx as cluster.ClusterFx[]);
      break;
  }
  if (w.cluster.answerTo.size > 0) cluster.routeAnswers(w.cluster, fx);
  return { state: w, effects: fx };
}

function onTimer(w: GamelistWorld, key: TimerKey, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  switch (key.kind) {
    case 'ping': {
      const p = w.peers.get(key.conn);
      if (!p || p.detached) return;
      fx.push({ type: 'timer', key, at: now + cfg.pingInterval });
      onConn(w, key.conn, { type: 'ping-tick' }, now, cfg, fx);
      return;
    }
    case 'pong':
      onConn(w, key.conn, { type: 'pong-deadline' }, now, cfg, fx);
      return;
    case 'deadline': {
      // Answering pings alone does not keep a socket open: it must get listed in time.
      const p = w.peers.get(key.conn);
      if (!p || p.detached || p.serverId !== null) return;
      closeServer(w, key.conn, GamelistClose.GOING_AWAY, `no registration within ${cfg.registrationTtl} ms`, now, cfg, fx);
      return;
    }
    case 'ttl': {
      const l = w.listed.get(key.serverId);
      if (!l) return;
      const left = l.lastRefresh + cfg.registrationTtl - now;
      if (left > 0) {
        fx.push({ type: 'timer', key, at: now + left });
        return;
      }
      fx.push({ type: 'log', level: 'debug', msg: 'gamelist: registration expired; server unlisted', data: { server: l.serverId } });
      unlist(w, l, false, now, cfg, fx);
      return;
    }
    case 'reserve':
      w.reserved.delete(key.key);
      return;
    case 'join': {
      const j = w.joins.get(key.id);
      if (!j) return;
      w.joins.delete(key.id);
      w.convs.delete(j.conv);
      fx.push({ type: 'count', metric: 'joins', result: 'timeout' });
      fx.push(failure(j.call, 504, JoinFailure.TIMEOUT, `The game server did not answer within ${cfg.joinTimeout} ms`, j.conv));
      return;
    }
    case 'forward':
      cluster.forwardTimedOut(w.cluster, key.id, cfg.joinTimeout, fx as cluster.ClusterFx[]);
      return;
    case 'kept':
      cluster.keptExpired(w.cluster, key.key);
      return;
  }
}

/** The socket's phase, set without a `phase` line (as a close the world decides, not the machine). */
function setPhase(w: GamelistWorld, p: PeerRec, to: ConnState['phase']): PeerRec {
  const next = { ...p, state: { ...p.state, phase: to } };
  w.peers.set(p.conn, next);
  return next;
}

/** Feeds a socket's protocol machine and turns what it asks for into effects. */
function onConn(w: GamelistWorld, conn: string, ev: GamelistEvent, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  const peer = w.peers.get(conn);
  if (!peer) return;
  const r = connStep(peer.state, ev, cfg.machine);
  if (peer.state.phase !== r.state.phase) fx.push({ type: 'phase', conn, from: peer.state.phase, to: r.state.phase });
  w.peers.set(conn, { ...peer, state: r.state });
  if (r.state.authenticated === true && peer.state.authenticated !== true) fx.push({ type: 'authenticated', conn });
  for (const e of r.effects) {
    switch (e.type) {
      case 'send':
        fx.push({ type: 'send', conn, frame: e.frame });
        break;
      case 'close':
        closeServer(w, conn, e.code, e.reason, now, cfg, fx);
        break;
      case 'register':
        register(w, conn, e.msg, now, cfg, fx);
        break;
      case 'registration-refused':
        fx.push({ type: 'auth-failed', conn, detail: 'registration with an invalid token' });
        fx.push({ type: 'count', metric: 'registrations', result: e.reason });
        break;
      case 'response':
        joinAnswered(w, conn, e.msg, fx);
        break;
      case 'ping':
        fx.push({ type: 'ping', conn });
        break;
      case 'arm-pong-deadline':
        fx.push({ type: 'timer', key: { kind: 'pong', conn }, at: now + cfg.pongTimeout });
        break;
      case 'cancel-pong-deadline':
        fx.push({ type: 'timer', key: { kind: 'pong', conn }, at: null });
        break;
      default: {
        const never: never = e;
        throw new Error(`unhandled gamelist machine effect ${JSON.stringify(never)}`);
      }
    }
  }
}

/** Closes the socket; its server leaves the list at once. */
function closeServer(w: GamelistWorld, conn: string, code: number, reason: string, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  const p = w.peers.get(conn);
  if (!p) return;
  setPhase(w, p, 'closed');
  detach(w, conn, now, cfg, fx);
  fx.push({ type: 'close', conn, code, reason });
}

/** Releases everything the socket holds, once. */
function detach(w: GamelistWorld, conn: string, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  const p = w.peers.get(conn);
  if (!p || p.detached) return;
  w.peers.set(conn, { ...p, detached: true });
  fx.push({ type: 'timer', key: { kind: 'ping', conn }, at: null });
  fx.push({ type: 'timer', key: { kind: 'pong', conn }, at: null });
  fx.push({ type: 'timer', key: { kind: 'deadline', conn }, at: null });
  if (p.serverId !== null) {
    const l = w.listed.get(p.serverId);
    if (l && l.conn === conn) unlist(w, l, true, now, cfg, fx);
    w.held.delete(p.serverId);
  }
  for (const [id, j] of w.joins) {
    if (j.conn !== conn) continue;
    w.joins.delete(id);
    w.convs.delete(j.conv);
    fx.push({ type: 'timer', key: { kind: 'join', id }, at: null });
    fx.push({ type: 'count', metric: 'joins', result: 'server_gone' });
    fx.push(failure(j.call, 502, JoinFailure.SERVER_GONE, 'The game server went away before answering', j.conv));
  }
}

/**
 * A disconnected server's id is kept for the same regToken, name and port from the same
 * address: name and port are easy to learn and a regToken may be shared, so without the
 * address another game server could take over a listed id (and its players' joins).
 */
export function reservationKey(regToken: string, info: Pick<ServerInfo, 'name' | 'port'>, address: string): string {
  return JSON.stringify([regToken, info.name, info.port, address]);
}

function register(w: GamelistWorld, conn: string, msg: RegisterMessage, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  const p = w.peers.get(conn);
  if (!p) return;
  const current = p.serverId === null ? undefined : w.listed.get(p.serverId);
  if (current && current.conn === conn) {
    w.listed.set(current.serverId, { ...current, info: msg.info, regToken: msg.regToken, lastRefresh: now });
    fx.push({ type: 'list', change: 'refreshed', serverId: current.serverId, servers: w.listed.size });
    announce(w, current.serverId, cfg, fx);
    fx.push({ type: 'count', metric: 'registrations', result: 'refreshed' });
    fx.push({ type: 'identity', conn, identity: `${msg.info.name} (${current.serverId})` });
    fx.push({ type: 'send', conn, frame: encodeResponse(MessageType.REGISTER_RESPONSE, msg.id, true) });
    return;
  }
  // Cluster-wide in cluster mode: the other instances' listings count too.
  const others = cluster.replicaCounts(w.cluster, p.address);
  if (w.listed.size + others.servers >= cfg.maxServers || (w.perIp.get(p.address) ?? 0) + others.fromAddress >= cfg.maxServersPerIp) {
    fx.push({ type: 'count', metric: 'registrations', result: 'server_limit' });
    fx.push({ type: 'send', conn, frame: encodeRegistrationError(msg.id, RegistrationError.SERVER_LIMIT) });
    return;
  }
  const first = p.serverId === null;
  fx.push({ type: 'timer', key: { kind: 'deadline', conn }, at: null });
  const serverId = p.serverId ?? claimReserved(w, msg, p.address, cfg, fx) ?? freshServerId(w, cfg);
  w.peers.set(conn, { ...p, serverId });
  w.held.add(serverId);
  w.listed.set(serverId, { conn, address: p.address, serverId, info: msg.info, regToken: msg.regToken, registeredAt: now, lastRefresh: now });
  fx.push({ type: 'timer', key: { kind: 'ttl', serverId }, at: now + cfg.registrationTtl });
  w.perIp.set(p.address, (w.perIp.get(p.address) ?? 0) + 1);
  fx.push({ type: 'list', change: 'listed', serverId, servers: w.listed.size });
  announce(w, serverId, cfg, fx);
  fx.push({ type: 'count', metric: 'registrations', result: 'listed' });
  fx.push({ type: 'phase', conn, from: 'open', to: 'listed' });
  fx.push({ type: 'identity', conn, identity: `${msg.info.name} (${serverId})` });
  fx.push({ type: 'send', conn, frame: encodeResponse(MessageType.REGISTER_RESPONSE, msg.id, true, undefined, first ? { server_id: serverId } : {}) });
}

function freshServerId(w: GamelistWorld, cfg: WorldConfig): string {
  const kept = new Set([...w.reserved.values(), ...w.cluster.kept.values()]);
  for (;;) {
    const id = cfg.newServerId();
    if (!w.held.has(id) && !kept.has(id) && !w.cluster.replicas.has(id)) return id;
  }
}

function claimReserved(w: GamelistWorld, msg: RegisterMessage, address: string, cfg: WorldConfig, fx: WorldEffect[]): string | undefined {
  const key = reservationKey(msg.regToken, msg.info, address);
  // Cluster mode: an id kept by another instance (the game server reconnected here); all forget it.
  const elsewhere = cfg.cluster === true ? cluster.claimKept(w.cluster, cluster.keepDigest(key), fx as cluster.ClusterFx[]) : undefined;
  const id = w.reserved.get(key);
  if (id === undefined) return elsewhere !== undefined && !w.held.has(elsewhere) ? elsewhere : undefined;
  w.reserved.delete(key);
  fx.push({ type: 'timer', key: { kind: 'reserve', key }, at: null });
  return w.held.has(id) || w.cluster.replicas.has(id) ? undefined : id;
}

/** Takes the server off the list. On a socket close, its id is kept for registrationTtl. */
function unlist(w: GamelistWorld, l: Listing, reserve: boolean, now: number, cfg: WorldConfig, fx: WorldEffect[]): void {
  if (w.listed.get(l.serverId) !== l) return;
  w.listed.delete(l.serverId);
  fx.push({ type: 'timer', key: { kind: 'ttl', serverId: l.serverId }, at: null });
  const n = (w.perIp.get(l.address) ?? 1) - 1;
  if (n > 0) w.perIp.set(l.address, n);
  else w.perIp.delete(l.address);
  fx.push({ type: 'list', change: 'unlisted', serverId: l.serverId, servers: w.listed.size });
  const key = reserve ? reservationKey(l.regToken, l.info, l.address) : undefined;
  if (cfg.cluster === true) fx.push({ type: 'cluster', to: null, msg: key === undefined ? { t: 'down', id: l.serverId } : { t: 'down', id: l.serverId, keep: cluster.keepDigest(key) } });
  if (key !== undefined) {
    w.reserved.set(key, l.serverId);
    fx.push({ type: 'timer', key: { kind: 'reserve', key }, at: now + cfg.registrationTtl });
  }
}

/** Another instance gave a game server the id kept here for it. */
function dropReserved(w: GamelistWorld, digest: string, fx: WorldEffect[]): void {
  for (const key of w.reserved.keys()) {
    if (cluster.keepDigest(key) !== digest) continue;
    w.reserved.delete(key);
    fx.push({ type: 'timer', key: { kind: 'reserve', key }, at: null });
  }
}

function joinAnswered(w: GamelistWorld, conn: string, msg: ResponseMessage, fx: WorldEffect[]): void {
  const id = canonicalInt64(msg.id);
  const j = msg.type === MessageType.JOIN_RESPONSE ? w.joins.get(id) : undefined;
  if (!j || j.conn !== conn) {
    fx.push({ type: 'log', level: 'debug', msg: 'gamelist: response to an unknown id ignored', data: { conn, type: msg.type, id: msg.id }, peer: conn });
    return;
  }
  w.joins.delete(id);
  w.convs.delete(j.conv);
  fx.push({ type: 'timer', key: { kind: 'join', id }, at: null });
  fx.push({ type: 'count', metric: 'joins', result: msg.success ? 'success' : 'rejected' });
  const body: JoinAnswer = { success: msg.success, conv: j.conv };
  if (msg.error) body.error = msg.error;
  fx.push({ type: 'reply', call: j.call, status: 200, body });
}

function join(w: GamelistWorld, ev: Extract<WorldEvent, { type: 'join' }>, cfg: WorldConfig, fx: WorldEffect[]): void {
  const fail = (result: JoinResult, reply: CallReply): void => {
    fx.push({ type: 'count', metric: 'joins', result });
    fx.push(reply);
  };
  if (ev.origin !== undefined) w.cluster.answerTo.set(ev.call, ev.origin);
  const l = w.listed.get(ev.serverId);
  const r = l === undefined && ev.origin === undefined ? w.cluster.replicas.get(ev.serverId) : undefined;
  // The instance holding the game server's socket checks the password and runs the join.
  if (r !== undefined) return cluster.forwardJoin(w.cluster, r, ev.call, ev.body, ev.now + cfg.joinTimeout, fx as cluster.ClusterFx[]);
  if (!l) return fail('not_found', failure(ev.call, 404, JoinFailure.NOT_FOUND, `No listed server ${ev.serverId}`));
  const body = isObj(ev.body) ? ev.body : {};
  const password = l.info.password;
  if (password !== undefined && hasPassword(l.info)) {
    const given = typeof body.password === 'string' ? body.password : '';
    if (!cfg.machine.secretEquals(given, password)) return fail('wrong_password', failure(ev.call, 403, JoinFailure.WRONG_PASSWORD, 'Wrong password'));
  }
  const { sessionToken, username } = body;
  const clantag = body.clantag ?? '';
  if (typeof sessionToken !== 'string' || typeof username !== 'string' || typeof clantag !== 'string') {
    return fail(
      'bad_request',
      failure(ev.call, 400, JoinFailure.BAD_REQUEST, 'The body must be JSON {sessionToken: string, username: string, clantag?: string, password?: string}'),
    );
  }
  let conv: number;
  do conv = cfg.newConv();
  while (w.convs.has(conv) || conv < 0 || conv > UINT32_MAX);
  const id = w.nextRequestId.toString();
  w.nextRequestId = w.nextRequestId >= INT64_MAX ? 1n : w.nextRequestId + 1n;
  if (ev.unreachable === true) return fail('server_gone', failure(ev.call, 502, JoinFailure.SERVER_GONE, 'The game server cannot take the request', conv));
  w.convs.add(conv);
  w.joins.set(canonicalInt64(id), { conn: l.conn, conv, call: ev.call });
  // The deadline before the frame: a send that cuts a slow socket feeds its close (which
  // cancels the deadline) while this step's effects are still being carried out.
  fx.push({ type: 'timer', key: { kind: 'join', id: canonicalInt64(id) }, at: ev.now + cfg.joinTimeout });
  fx.push({ type: 'send', conn: l.conn, frame: encodeJoin(id, { sessionToken, username, clantag, conv }) });
}

/** Cluster mode: the other instances learn the listing as it is now. */
function announce(w: GamelistWorld, serverId: string, cfg: WorldConfig, fx: WorldEffect[]): void {
  const l = w.listed.get(serverId);
  if (cfg.cluster === true && l) fx.push({ type: 'cluster', to: null, msg: { t: 'up', s: cluster.replicaInfo(l) } });
}

function failure(call: string, status: number, type: JoinFailure, msg: string, conv?: number): CallReply {
  const body: JoinAnswer = { success: false, error: { type, msg } };
  if (conv !== undefined) body.conv = conv;
  return { type: 'reply', call, status, body };
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Counts for leak checks and `muster status`. */
export function worldSummary(w: GamelistWorld): { connections: number; servers: number; pendingJoins: number; reservedIds: number } {
  return { connections: w.peers.size, servers: w.listed.size, pendingJoins: w.joins.size, reservedIds: w.reserved.size };
}
