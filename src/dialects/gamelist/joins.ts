/**
 * Player joins: the join request forwarded to the game server, its answer, and the
 * HTTP reply on success, failure, timeout or a socket that went away.
 */
import { randomInt } from 'node:crypto';
import type { HttpReply, HttpRequest } from '../../core/dialect.js';
import type { PendingEntry } from '../../core/pending.js';
import { JoinFailure, type JoinAnswer } from '../../protocols/gamelist/api.js';
import { canonicalInt64, encodeJoin, MessageType, UINT32_MAX, type ResponseMessage } from '../../protocols/gamelist/messages.js';
import { hasPassword } from './snapshot.js';
import type { GameServer, Hub, JoinResult, JoinWait } from './types.js';

export function joinAnswered(hub: Hub, gs: GameServer, msg: ResponseMessage): void {
  const key = canonicalInt64(msg.id);
  const entry = msg.type === MessageType.JOIN_RESPONSE ? hub.pending.get(key) : undefined;
  if (!entry || entry.data.gs !== gs) {
    hub.ctx.logger.debug({ conn: gs.conn.id, type: msg.type, id: msg.id }, 'gamelist: response to an unknown id ignored');
    return;
  }
  hub.pending.take(key);
  hub.convs.delete(entry.data.conv);
  hub.m.joins.inc({ result: msg.success ? 'success' : 'rejected' });
  const body: JoinAnswer = { success: msg.success, conv: entry.data.conv };
  if (msg.error) body.error = msg.error;
  entry.data.resolve({ status: 200, body });
}

export function joinExpired(hub: Hub, e: PendingEntry<JoinWait>): void {
  hub.convs.delete(e.data.conv);
  hub.m.joins.inc({ result: 'timeout' });
  e.data.resolve(failure(504, JoinFailure.TIMEOUT, `The game server did not answer within ${hub.cfg.joinTimeout} ms`, e.data.conv));
}

export function freshConv(hub: Hub): number {
  for (;;) {
    const conv = randomInt(0, UINT32_MAX + 1);
    if (!hub.convs.has(conv)) return conv;
  }
}

export function joinServer(hub: Hub, req: HttpRequest): HttpReply | Promise<HttpReply> {
  const fail = (result: JoinResult, reply: HttpReply): HttpReply => {
    hub.m.joins.inc({ result });
    return reply;
  };
  const serverId = req.params.server_id ?? '';
  const listing = hub.listed.get(serverId);
  if (!listing) return fail('not_found', failure(404, JoinFailure.NOT_FOUND, `No listed server ${serverId}`));
  const body = isObj(req.body) ? req.body : {};
  const password = listing.info.password;
  if (password !== undefined && hasPassword(listing.info)) {
    const given = typeof body.password === 'string' ? body.password : '';
    if (!hub.secretEquals(given, password)) return fail('wrong_password', failure(403, JoinFailure.WRONG_PASSWORD, 'Wrong password'));
  }
  const { sessionToken, username } = body;
  const clantag = body.clantag ?? '';
  if (typeof sessionToken !== 'string' || typeof username !== 'string' || typeof clantag !== 'string') {
    return fail(
      'bad_request',
      failure(400, JoinFailure.BAD_REQUEST, 'The body must be JSON {sessionToken: string, username: string, clantag?: string, password?: string}'),
    );
  }
  const gs = listing.gs;
  const conv = freshConv(hub);
  const id = hub.ids.next();
  if (!gs.conn.send(encodeJoin(id, { sessionToken, username, clantag, conv }))) {
    return fail('server_gone', failure(502, JoinFailure.SERVER_GONE, 'The game server cannot take the request', conv));
  }
  hub.convs.add(conv);
  return new Promise<HttpReply>((resolve) => {
    hub.pending.add(canonicalInt64(id), hub.cfg.joinTimeout, { gs, conv, resolve });
  });
}

export function failure(status: number, type: JoinFailure, msg: string, conv?: number): HttpReply {
  const body: JoinAnswer = { success: false, error: { type, msg } };
  if (conv !== undefined) body.conv = conv;
  return { status, body };
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
