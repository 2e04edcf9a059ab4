/**
 * The bus world's shared timers (identify deadlines, request timeouts, heartbeats): one
 * timer per kind, armed for the earliest entry, each map kept in deadline order.
 */
import { DisconnectReason } from '../../protocols/bus/messages.js';
import { expire } from './requests.js';
import { disconnect, feed } from './world.js';
import { arm, type BusWorld, type BusWorldConfig, type Eff, type TimerKey } from './world-state.js';

export function onTimer(w: BusWorld, key: TimerKey, now: number, cfg: BusWorldConfig, out: Eff[]): void {
  w.armed[key] = null;
  switch (key) {
    case 'identify':
      for (const [conn, at] of w.identifying) {
        if (at > now) break;
        w.identifying.delete(conn);
        const svc = w.services.get(conn);
        // Still waiting for its name's claim: the machine has it identified already.
        if (svc?.claim) disconnect(w, svc, DisconnectReason.IDENTIFY_TIMEOUT, undefined, out);
        else if (svc) feed(w, svc, { type: 'identify-deadline' }, cfg, out, undefined);
      }
      {
        const first = w.identifying.values().next();
        if (!first.done) arm(w, out, 'identify', first.value);
      }
      return;
    case 'requests':
      for (const r of w.pending.values()) {
        if (r.deadline > now) break;
        w.pending.delete(r.key);
        expire(w, r, out);
      }
      {
        const first = w.pending.values().next();
        if (!first.done) arm(w, out, 'requests', first.value.deadline);
      }
      return;
    case 'heartbeat':
      for (;;) {
        const at = w.heartbeats.nextAt();
        if (at === undefined || at > now) break;
        const svc = w.heartbeats.shift();
        let next = at + cfg.heartbeatInterval;
        if (next <= now) next = now + cfg.heartbeatInterval;
        w.heartbeats.push(svc, next);
        feed(w, svc, { type: 'heartbeat-tick', now, lastSeen: cfg.lastSeen(svc.conn) }, cfg, out, undefined);
      }
      {
        const first = w.heartbeats.nextAt();
        if (first !== undefined) arm(w, out, 'heartbeat', first);
      }
      return;
  }
}
