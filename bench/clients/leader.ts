/**
 * P9 load generator: a sharding fleet of CONTROLs (real `ShardingControl` clients, all
 * in this process) spread over several Muster instances, to time a leader failover.
 *
 * start {urls, key, n, heartbeatGrace, reconnectWindow, fenceMargin}
 *     connects n CONTROLs, CONTROL i to urls[i % urls.length]; their start hook
 *     connects every shard at once
 * stable {shardCount, timeoutMs}
 *     waits until every CONTROL is identified and every shard is connected on exactly
 *     one of them
 * dead {url}
 *     that instance is about to die: a CONTROL whose socket to it closes reconnects to
 *     the next live instance in the list (its WebSocket class picks the URL)
 * revive {index, url}
 *     instance `index` runs again, at a new URL (a CONTROL whose own URL is dead may be
 *     sent there)
 * killed {at}
 *     the leader died at `at` (epoch ms)
 * reconfirmed {timeoutMs}
 *     waits until every CONTROL has been re-confirmed by a leader after `at`: a CONTROL
 *     still connected gets the ACK of a HEARTBEAT it sent after `at` (the old leader
 *     is dead, so only the new one answers it); one that was on the dead instance gets
 *     IDENTIFIED on its new socket. Answers with each CONTROL's time, and the OFFLOAD and
 *     SHUTDOWN frames received since `at` (a takeover that changes nothing sends none)
 * close
 */
import WebSocket from 'ws';
import { ShardingControl } from '../../src/client/sharding.js';
import { emit, serve } from '../lib/ipc.js';
import { eachShardOnce, ids, until, type Range } from './fleet.js';

interface Ctl {
  c: ShardingControl;
  lastHeartbeatAt: number;
  confirmedAt: number;
  how: string;
  offloads: number;
  shutdowns: number;
}

let urls: string[] = [];
const dead = new Set<string>();
let killedAt = Number.NaN;
let ctls: Ctl[] = [];

/** The URL to dial instead of `url`: itself while its instance lives, else the next live one. */
function live(url: string): string {
  if (!dead.has(url)) return url;
  const i = urls.indexOf(url);
  for (let k = 1; k <= urls.length; k++) {
    const u = urls[(i + k) % urls.length] as string;
    if (!dead.has(u)) return u;
  }
  return url;
}

/** `ws`, dialling a live instance instead of a dead one. */
class FailoverWebSocket extends WebSocket {
  constructor(url: string, options: WebSocket.ClientOptions) {
    super(live(url), options);
  }
}

function watch(ctl: Ctl, ws: WebSocket | undefined): void {
  if (!ws) return;
  const send = ws.send.bind(ws) as (data: unknown, ...rest: unknown[]) => void;
  (ws as unknown as { send: (data: unknown, ...rest: unknown[]) => void }).send = (data: unknown, ...rest: unknown[]) => {
    if (typeof data === 'string' && data.length < 100 && data.includes('"o":9')) ctl.lastHeartbeatAt = Date.now();
    send(data, ...rest);
  };
  ws.on('message', (buf: Buffer) => {
    if (!Number.isFinite(killedAt) || Number.isFinite(ctl.confirmedAt)) return;
    const text = buf.toString('utf8');
    const m = /"o":\s*(\d+)/.exec(text);
    const op = m ? Number(m[1]) : -1;
    const now = Date.now();
    if (op === 8 && ctl.lastHeartbeatAt > killedAt) {
      ctl.confirmedAt = now;
      ctl.how = 'ACK';
    } else if (op === 15 && now > killedAt) {
      ctl.confirmedAt = now;
      ctl.how = 'IDENTIFIED';
    }
  });
}

serve({
  start: async (p: { urls: string[]; key: string; n: number; heartbeatGrace: number; reconnectWindow: number; fenceMargin: number }) => {
    urls = p.urls;
    ctls = Array.from({ length: p.n }, (_, i) => {
      const ctl: Ctl = { c: undefined as unknown as ShardingControl, lastHeartbeatAt: Number.NaN, confirmedAt: Number.NaN, how: '', offloads: 0, shutdowns: 0 };
      ctl.c = new ShardingControl({
        url: urls[i % urls.length] as string,
        WebSocket: FailoverWebSocket,
        authorization: p.key,
        name: `control-${i}`,
        reconnect: { minMs: 20, maxMs: 100 },
        heartbeatGrace: p.heartbeatGrace,
        reconnectWindow: p.reconnectWindow,
        fenceMargin: p.fenceMargin,
        start: async () => undefined,
        stop: () => undefined,
      });
      ctl.c.on('initialise', () => watch(ctl, ctl.c.socket));
      ctl.c.on('offload', () => {
        if (Date.now() > killedAt) ctl.offloads++;
      });
      ctl.c.on('shutdown', () => {
        if (Date.now() > killedAt) ctl.shutdowns++;
      });
      ctl.c.on('error', (err: Error) => console.error(`control-${i}: ${err.message}`));
      return ctl;
    });
    await Promise.all(ctls.map((c) => c.c.connect()));
    return true;
  },
  stable: async (p: { shardCount: number; timeoutMs: number }) => {
    const ok = (): boolean => {
      if (ctls.some((c) => !c.c.identified)) return false;
      return eachShardOnce(ctls.map((c) => c.c), p.shardCount);
    };
    await until(ok, p.timeoutMs, 'fleet stable');
    return true;
  },
  dead: (p: { url: string }) => {
    dead.add(p.url);
    return true;
  },
  revive: (p: { index: number; url: string }) => {
    urls[p.index] = p.url;
    return true;
  },
  killed: (p: { at: number }) => {
    killedAt = p.at;
    for (const c of ctls) {
      c.confirmedAt = Number.NaN;
      c.how = '';
      c.offloads = 0;
      c.shutdowns = 0;
    }
    return true;
  },
  reconfirmed: async (p: { timeoutMs: number }) => {
    await until(() => ctls.every((c) => Number.isFinite(c.confirmedAt)), p.timeoutMs, 'every CONTROL re-confirmed');
    return {
      controls: ctls.map((c) => ({ name: c.c.name, at: c.confirmedAt, how: c.how, shards: ids(c.c.connected as Range[]).length })),
      offloads: ctls.reduce((a, c) => a + c.offloads, 0),
      shutdowns: ctls.reduce((a, c) => a + c.shutdowns, 0),
    };
  },
  close: async () => {
    await Promise.all(ctls.map((c) => c.c.close()));
    ctls = [];
    return true;
  },
});
emit('ready', {});
