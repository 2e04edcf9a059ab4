/**
 * Names unique cluster-wide (cluster mode), as part of the pure world.
 *
 * Each world sees the names of the services on other instances through its replicas
 * (world-cluster.ts), but two services that take the same name on two instances at the
 * same moment would both find it free there. So in cluster mode an IDENTIFY with a name
 * that this world finds free claims it cluster-wide first (a `claim` effect; the glue asks
 * the Broker, which keeps the claims in Redis) and succeeds only when the answer comes
 * back as a `claimed` event: `ok` (the name is this service's), `taken` (NAME_TAKEN) or
 * `unavailable` (Redis could not say: UNAVAILABLE, try again). Frames the service sends
 * meanwhile wait and are handled in order once it has identified. A service that held a
 * claim releases it when it leaves (`release`); a dead instance's claims go with its
 * presence (redis-presence.ts). With one process (`claimNames` off) nothing of this runs.
 */
import { DisconnectReason, type IdentifyData } from '../../protocols/bus/messages.js';
import { disconnect, enlist, feed } from './world.js';
import type { BusWorld, BusWorldConfig, Eff, Service, WorldEvent } from './world-state.js';

/** Frames a service may send between its IDENTIFY and the answer before it is cut. */
export const MAX_HELD_FRAMES = 64;

/** Starts the claim of a name this world found free; the IDENTIFY waits for the answer. */
export function claimName(w: BusWorld, svc: Service, data: IdentifyData, out: Eff[]): void {
  const name = data.name as string;
  w.claims.set(name, svc.conn);
  svc.claim = { data, held: [] };
  out.push({ type: 'claim', conn: svc.conn, name });
}

/** A frame from a service whose name is being claimed: it waits (bounded). */
export function hold(w: BusWorld, svc: Service, data: Buffer, binary: boolean, out: Eff[]): void {
  const held = svc.claim?.held;
  if (!held) return;
  if (held.length >= MAX_HELD_FRAMES) {
    disconnect(w, svc, DisconnectReason.BAD_MESSAGE, `more than ${MAX_HELD_FRAMES} frames sent before IDENTIFIED`, out);
    return;
  }
  held.push({ data, binary });
}

export function onClaimed(w: BusWorld, ev: Extract<WorldEvent, { type: 'claimed' }>, cfg: BusWorldConfig, out: Eff[]): void {
  if (w.claims.get(ev.name) === ev.conn) w.claims.delete(ev.name);
  const svc = w.services.get(ev.conn);
  const claim = svc?.claim;
  if (!svc || !claim || svc.state.phase === 'closed' || claim.data.name !== ev.name) {
    // It left (or timed out) meanwhile: a name it got is free again.
    if (ev.outcome === 'ok') out.push({ type: 'release', conn: ev.conn, name: ev.name });
    return;
  }
  svc.claim = undefined;
  if (ev.outcome === 'taken') {
    out.push({ type: 'why', conn: svc.conn, why: 'name in use' });
    disconnect(w, svc, DisconnectReason.NAME_TAKEN, `the name "${ev.name}" is in use`, out);
    return;
  }
  if (ev.outcome === 'unavailable') {
    disconnect(w, svc, DisconnectReason.UNAVAILABLE, 'the cluster cannot be reached to check that the name is free; try again', out);
    return;
  }
  svc.claimed = true;
  enlist(w, svc, claim.data, cfg, out);
  for (const f of claim.held) {
    if (!svc.identified) break;
    feed(w, svc, { type: 'frame', data: f.data, binary: f.binary, headerToken: svc.headerToken }, cfg, out, f.data);
  }
}
