/**
 * Registrations: listing and refreshing a server, the limits, server ids (fresh, or kept
 * for a reconnecting GS for registrationTtl), the TTL and unlisting.
 */
import { encodeRegistrationError, encodeResponse, GamelistClose, MessageType, RegistrationError, type RegisterMessage, type ServerInfo } from '../../protocols/gamelist/messages.js';
import type { GameServer, Hub, Listing, RegistrationResult } from './types.js';
import { closeServer } from './sockets.js';
import { changed } from './list.js';

export function countRegistration(hub: Hub, result: RegistrationResult): void {
  hub.m.registrations.inc({ result });
}

export function register(hub: Hub, gs: GameServer, msg: RegisterMessage): void {
  const now = hub.ctx.scheduler.now();
  const listing = gs.listing;
  if (listing) {
    listing.info = msg.info;
    listing.regToken = msg.regToken;
    listing.lastRefresh = now;
    changed(hub);
    countRegistration(hub, 'refreshed');
    gs.conn.identity = `${msg.info.name} (${listing.serverId})`;
    gs.conn.send(encodeResponse(MessageType.REGISTER_RESPONSE, msg.id, true));
    return;
  }
  const ip = gs.conn.remoteAddress;
  if (hub.listed.size >= hub.cfg.maxServers || (hub.perIp.get(ip) ?? 0) >= hub.cfg.maxServersPerIp) {
    countRegistration(hub, 'server_limit');
    gs.conn.send(encodeRegistrationError(msg.id, RegistrationError.SERVER_LIMIT));
    return;
  }
  const first = gs.serverId === undefined;
  gs.registrationDeadline?.cancel();
  gs.registrationDeadline = undefined;
  gs.serverId ??= claimReserved(hub, gs, msg) ?? freshServerId(hub);
  const serverId = gs.serverId;
  hub.held.add(serverId);
  const entry: Listing = {
    gs,
    serverId,
    info: msg.info,
    regToken: msg.regToken,
    registeredAt: now,
    lastRefresh: now,
    ttl: hub.ctx.scheduler.after(hub.cfg.registrationTtl, () => ttlCheck(hub, entry)),
  };
  gs.listing = entry;
  hub.listed.set(serverId, entry);
  if (hub.gone.delete(serverId)) hub.goneVersion++;
  hub.perIp.set(ip, (hub.perIp.get(ip) ?? 0) + 1);
  changed(hub);
  hub.m.servers.set(hub.listed.size);
  countRegistration(hub, 'listed');
  gs.conn.stateChanged('open', 'listed');
  gs.conn.identity = `${msg.info.name} (${serverId})`;
  gs.conn.send(encodeResponse(MessageType.REGISTER_RESPONSE, msg.id, true, undefined, first ? { server_id: serverId } : {}));
}

export function freshServerId(hub: Hub): string {
  for (;;) {
    const id = hub.newServerId();
    if (!hub.held.has(id) && ![...hub.reserved.values()].some((r) => r.serverId === id)) return id;
  }
}

export function claimReserved(hub: Hub, gs: GameServer, msg: RegisterMessage): string | undefined {
  const key = reservationKey(msg.regToken, msg.info, gs.conn.remoteAddress);
  const r = hub.reserved.get(key);
  if (!r) return undefined;
  r.timer.cancel();
  hub.reserved.delete(key);
  return hub.held.has(r.serverId) ? undefined : r.serverId;
}

export function ttlCheck(hub: Hub, entry: Listing): void {
  if (entry.gs.listing !== entry) return;
  const left = entry.lastRefresh + hub.cfg.registrationTtl - hub.ctx.scheduler.now();
  if (left > 0) {
    entry.ttl = hub.ctx.scheduler.after(left, () => ttlCheck(hub, entry));
    return;
  }
  hub.ctx.logger.debug({ server: entry.serverId }, 'gamelist: registration expired; server unlisted');
  unlist(hub, entry.gs, false);
}

/** Takes the server off the list. On a socket close, its id is kept for registrationTtl. */
export function unlist(hub: Hub, gs: GameServer, reserve: boolean): void {
  const entry = gs.listing;
  if (!entry) return;
  gs.listing = undefined;
  entry.ttl.cancel();
  if (hub.listed.get(entry.serverId) === entry) hub.listed.delete(entry.serverId);
  const ip = gs.conn.remoteAddress;
  const n = (hub.perIp.get(ip) ?? 1) - 1;
  if (n > 0) hub.perIp.set(ip, n);
  else hub.perIp.delete(ip);
  if (hub.snap?.entry(entry.serverId) && !hub.gone.has(entry.serverId)) {
    hub.gone.add(entry.serverId);
    hub.goneVersion++;
  }
  changed(hub);
  hub.m.servers.set(hub.listed.size);
  if (reserve) {
    const key = reservationKey(entry.regToken, entry.info, gs.conn.remoteAddress);
    hub.reserved.get(key)?.timer.cancel();
    const slot = {
      serverId: entry.serverId,
      timer: hub.ctx.scheduler.after(hub.cfg.registrationTtl, () => {
        if (hub.reserved.get(key) === slot) hub.reserved.delete(key);
      }),
    };
    hub.reserved.set(key, slot);
  }
}

/**
 * A disconnected server's id is kept for the same regToken, name and port from the same
 * address: name and port are easy to learn and a regToken may be shared, so without the
 * address another game server could take over a listed id (and its players' joins).
 */
function reservationKey(regToken: string, info: Pick<ServerInfo, 'name' | 'port'>, address: string): string {
  return JSON.stringify([regToken, info.name, info.port, address]);
}

/**
 * A socket has `registrationTtl` from its opening to get listed (a valid registration
 * within the limits). One that never does is closed with 1001, as a socket that stops
 * answering pings is: answering pings alone does not keep a socket open.
 */
export function registrationDeadline(hub: Hub, gs: GameServer): void {
  gs.registrationDeadline = undefined;
  if (gs.detached || gs.serverId !== undefined) return;
  closeServer(hub, gs, GamelistClose.GOING_AWAY, `no registration within ${hub.cfg.registrationTtl} ms`);
}
