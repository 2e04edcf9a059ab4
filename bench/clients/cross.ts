/**
 * P8 load generator: requester/responder pairs whose responder is connected to one
 * server and requester to another (`respUrl` ≠ `reqUrl`: the message crosses instances
 * through Redis) or to the same one (the one-instance baseline). Messages are about
 * 150 bytes, as in P1.
 *
 *   --impl muster | sio
 *
 * setup {respUrl, reqUrl, pairs}   connects the pairs
 * paced {rate, ms}                 open loop: `rate` requests a second spread over the
 *                                  pairs for `ms`, each timed from its send to its reply;
 *                                  answers with the latencies' p50/p99/max (ms)
 * start {maxMs} / count / stop     closed loop (as P1): each pair sends its next request
 *                                  when the reply arrives; count = round trips so far
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type WebSocket from 'ws';
import type { Socket } from 'socket.io-client';
import { MESSAGE_BYTES, padTo, type Impl } from '../lib/constants.js';
import { childArgs, emit, serve, sleep } from '../lib/ipc.js';
import { connectBus, connectSio, pool } from './conn.js';
import { loopCalls } from './loop.js';

const impl = (childArgs().impl ?? 'muster') as Impl;

interface Pair {
  /** Sends one request; `onReply(error)` is called when its answer arrives. */
  send(onReply: (error: boolean) => void): void;
}

const pairs: Pair[] = [];
const closers: Array<() => void> = [];

function musterPair(i: number, respUrl: string, reqUrl: string): Promise<Pair> {
  return (async () => {
    const reqPad = padTo(MESSAGE_BYTES, (pad) =>
      `{"op":0,"id":"${i}-100000","event":"REQ","expect_reply":1,"intent":{"target":"DIRECT","identifier":"00000000-0000-0000-0000-000000000000"},"data":{"pad":"${pad}"}}`,
    );
    const repPad = padTo(MESSAGE_BYTES, (pad) => `{"op":5,"id":"${i}-100000","data":{"pad":"${pad}"}}`);
    const responder = await connectBus(respUrl, (text, ws) => {
      const msg = JSON.parse(text) as { op: number; id?: string };
      if (msg.op === 0 && msg.id !== undefined) ws.send(`{"op":5,"id":"${msg.id}","data":{"pad":"${repPad}"}}`);
    });
    let seq = 100_000;
    const to = responder.id;
    const waiting = new Map<string, (error: boolean) => void>();
    const ref: { ws?: WebSocket } = {};
    const requester = await connectBus(reqUrl, (text) => {
      if (!text.startsWith('{"op":5')) return;
      const m = /"id":"([^"]+)"/.exec(text);
      const cb = m ? waiting.get(m[1] as string) : undefined;
      if (!cb || !m) return;
      waiting.delete(m[1] as string);
      cb(text.includes('"error":"'));
    });
    ref.ws = requester.ws;
    closers.push(() => responder.ws.terminate(), () => requester.ws.terminate());
    return {
      send: (onReply) => {
        seq++;
        const id = `${i}-${seq}`;
        waiting.set(id, onReply);
        ref.ws?.send(`{"op":0,"id":"${id}","event":"REQ","expect_reply":1,"intent":{"target":"DIRECT","identifier":"${to}"},"data":{"pad":"${reqPad}"}}`);
      },
    };
  })();
}

function sioPair(i: number, respUrl: string, reqUrl: string): Promise<Pair> {
  return (async () => {
    const repPad = padTo(MESSAGE_BYTES, (pad) => `431[{"id":"${i}-100000","pad":"${pad}"}]`);
    const reqPad = padTo(MESSAGE_BYTES, (pad) => `421["req","AAAAAAAAAAAAAAAAAAAA",{"id":"${i}-100000","pad":"${pad}"}]`);
    const responder: Socket = await connectSio(respUrl);
    responder.on('req', (data: { id: string }, ack: (res: unknown) => void) => ack({ id: data.id, pad: repPad }));
    const requester: Socket = await connectSio(reqUrl);
    const to = responder.id;
    if (to === undefined) throw new Error('socket.io responder has no id');
    let seq = 100_000;
    closers.push(() => responder.disconnect(), () => requester.disconnect());
    return {
      send: (onReply) => {
        seq++;
        requester.emit('req', to, { id: `${i}-${seq}`, pad: reqPad }, (res: { error?: string }) => onReply(res.error !== undefined));
      },
    };
  })();
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

// Closed loop state.
let running = false;
let count = 0;
let errors = 0;
let inFlight = 0;
let deadline = 0;

function loop(p: Pair): void {
  inFlight++;
  p.send((error) => {
    inFlight--;
    count++;
    if (error) errors++;
    if (running && performance.now() < deadline) loop(p);
  });
}

serve({
  setup: async (p: { respUrl: string; reqUrl: string; pairs: number }) => {
    const make = impl === 'muster' ? musterPair : impl === 'sio' ? sioPair : undefined;
    if (!make) throw new Error(`P8 has no client for ${impl}`);
    await pool(p.pairs, 20, async (i) => {
      pairs.push(await make(i, p.respUrl, p.reqUrl));
    });
    return { pairs: pairs.length };
  },
  paced: async (p: { rate: number; ms: number }) => {
    const lat: number[] = [];
    /** Send times of the replies slower than 4 ms: a stall delays a run of them at once. */
    const slowAt: number[] = [];
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    let sent = 0;
    let failed = 0;
    let answered = 0;
    const t0 = performance.now();
    const total = Math.round((p.rate * p.ms) / 1000);
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) * p.rate) / 1000));
        while (sent < due) {
          const pair = pairs[sent % pairs.length] as Pair;
          const start = performance.now();
          sent++;
          pair.send((error) => {
            answered++;
            if (error) failed++;
            else {
              const ms = performance.now() - start;
              lat.push(ms);
              if (ms > 4) slowAt.push(start);
            }
          });
        }
        if (sent >= total) {
          clearInterval(tick);
          resolve();
        }
      }, 1);
    });
    // The last replies (bounded: 5 s).
    const until = performance.now() + 5000;
    while (answered < sent && performance.now() < until) await sleep(5);
    const ms = performance.now() - t0;
    loop.disable();
    lat.sort((a, b) => a - b);
    // Slow replies whose requests were sent within 20 ms of each other count as one stall.
    let stalls = 0;
    for (let i = 0; i < slowAt.length; i++) if (i === 0 || (slowAt[i] as number) - (slowAt[i - 1] as number) > 20) stalls++;
    return {
      sent,
      answered,
      errors: failed,
      ms,
      p50: pct(lat, 50),
      p99: pct(lat, 99),
      max: lat[lat.length - 1] ?? Number.NaN,
      slow: slowAt.length,
      stalls,
      lagP99: loop.percentile(99) / 1e6,
      lagMax: loop.max / 1e6,
    };
  },
  start: (p: { maxMs: number }) => {
    running = true;
    deadline = performance.now() + p.maxMs;
    for (const pair of pairs) loop(pair);
    return true;
  },
  ...loopCalls({
    totals: () => ({ count, errors }),
    inFlight: () => inFlight,
    halt: () => {
      running = false;
    },
    closers,
  }),
});
emit('ready', { impl });
