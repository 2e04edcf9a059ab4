/**
 * One game server socket: the socket machine (machine.ts) fed with frames, pongs and
 * deadlines, its effects carried out, and everything the socket holds released once.
 */
import { JoinFailure } from '../../protocols/gamelist/api.js';
import { step, type Effect, type GamelistEvent } from './machine.js';
import type { GameServer, Hub } from './types.js';
import { failure, joinAnswered } from './joins.js';
import { countRegistration, register, unlist } from './registrations.js';

export function feed(hub: Hub, gs: GameServer, event: GamelistEvent): void {
  const { state, effects } = step(gs.state, event, hub.machine);
  gs.conn.stateChanged(gs.state.phase, state.phase);
  gs.state = state;
  if (state.authenticated) gs.conn.markAuthenticated();
  for (const e of effects) run(hub, gs, e);
}

export function run(hub: Hub, gs: GameServer, e: Effect): void {
  switch (e.type) {
    case 'send':
      gs.conn.send(e.frame);
      return;
    case 'close':
      closeServer(hub, gs, e.code, e.reason);
      return;
    case 'register':
      register(hub, gs, e.msg);
      return;
    case 'registration-refused':
      gs.conn.authFailed('registration with an invalid token');
      countRegistration(hub, e.reason);
      return;
    case 'response':
      joinAnswered(hub, gs, e.msg);
      return;
    case 'ping':
      gs.conn.ping();
      return;
    case 'arm-pong-deadline':
      gs.pongDeadline?.cancel();
      gs.pongDeadline = hub.ctx.scheduler.after(hub.cfg.pongTimeout, () => feed(hub, gs, { type: 'pong-deadline' }));
      return;
    case 'cancel-pong-deadline':
      gs.pongDeadline?.cancel();
      gs.pongDeadline = undefined;
      return;
  }
}

/** Closes the socket and takes its server off the list at once. */
export function closeServer(hub: Hub, gs: GameServer, code: number, reason: string): void {
  gs.state = { ...gs.state, phase: 'closed' };
  detach(hub, gs);
  gs.conn.close(code, reason);
}

/** Releases everything the socket holds, once. */
export function detach(hub: Hub, gs: GameServer): void {
  if (gs.detached) return;
  gs.detached = true;
  gs.ping?.cancel();
  gs.ping = undefined;
  gs.pongDeadline?.cancel();
  gs.pongDeadline = undefined;
  gs.registrationDeadline?.cancel();
  gs.registrationDeadline = undefined;
  unlist(hub, gs, true);
  if (gs.serverId !== undefined) hub.held.delete(gs.serverId);
  for (const e of hub.pending.takeWhere((p) => p.data.gs === gs)) {
    hub.convs.delete(e.data.conv);
    hub.m.joins.inc({ result: 'server_gone' });
    e.data.resolve(failure(502, JoinFailure.SERVER_GONE, 'The game server went away before answering', e.data.conv));
  }
}

export function release(hub: Hub, gs: GameServer): void {
  gs.state = { ...gs.state, phase: 'closed' };
  detach(hub, gs);
  hub.sockets.delete(gs.conn);
}
