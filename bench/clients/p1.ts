/**
 * P1 load generator: N requester/responder pairs. Each requester sends one request to
 * its responder and sends the next one when the reply arrives (closed loop), so there
 * are always N requests in flight. Messages are about 150 bytes.
 *
 *   --impl muster | ws | sio
 */
import type WebSocket from 'ws';
import type { Socket } from 'socket.io-client';
import { MESSAGE_BYTES, padTo, type Impl } from '../lib/constants.js';
import { childArgs, emit, serve } from '../lib/ipc.js';
import { connectBus, connectRelay, connectSio, pool } from './conn.js';
import { loopCalls } from './loop.js';

const impl = (childArgs().impl ?? 'muster') as Impl;

interface Pair {
  send(): void;
}

let running = false;
let count = 0;
let errors = 0;
let inFlight = 0;
let maxCount = 0;
let deadline = 0;
const pairs: Pair[] = [];
let CURRENT_URL = '';
const closers: Array<() => void> = [];

/** Called by a requester when its reply arrived: count it, maybe send the next. */
function done(p: Pair, error: boolean): void {
  inFlight--;
  count++;
  if (error) errors++;
  if (running && count < maxCount && performance.now() < deadline) {
    inFlight++;
    p.send();
  }
}

function musterPair(i: number): Promise<Pair> {
  return (async () => {
    const reqPad = padTo(MESSAGE_BYTES, (pad) =>
      `{"op":0,"id":"${i}-100000","event":"REQ","expect_reply":1,"intent":{"target":"DIRECT","identifier":"00000000-0000-0000-0000-000000000000"},"data":{"pad":"${pad}"}}`,
    );
    const repPad = padTo(MESSAGE_BYTES, (pad) => `{"op":5,"id":"${i}-100000","data":{"pad":"${pad}"}}`);
    const responder = await connectBus(CURRENT_URL, (text, ws) => {
      const msg = JSON.parse(text) as { op: number; id?: string };
      if (msg.op === 0 && msg.id !== undefined) ws.send(`{"op":5,"id":"${msg.id}","data":{"pad":"${repPad}"}}`);
    });
    let seq = 100_000;
    const to = responder.id;
    const ref: { ws?: WebSocket } = {};
    const pair: Pair = {
      send: () => {
        seq++;
        ref.ws?.send(`{"op":0,"id":"${i}-${seq}","event":"REQ","expect_reply":1,"intent":{"target":"DIRECT","identifier":"${to}"},"data":{"pad":"${reqPad}"}}`);
      },
    };
    const requester = await connectBus(CURRENT_URL, (text) => {
      if (text.startsWith('{"op":5')) done(pair, text.includes('"error":"'));
    });
    ref.ws = requester.ws;
    closers.push(() => responder.ws.terminate(), () => requester.ws.terminate());
    return pair;
  })();
}

function relayPair(i: number): Promise<Pair> {
  return (async () => {
    const reqPad = padTo(MESSAGE_BYTES, (pad) => `{"op":0,"to":"10000","from":"10000","id":"${i}-100000","data":{"pad":"${pad}"}}`);
    const repPad = padTo(MESSAGE_BYTES, (pad) => `{"op":5,"to":"10000","id":"${i}-100000","data":{"pad":"${pad}"}}`);
    const responder = await connectRelay(CURRENT_URL, (text, ws) => {
      const msg = JSON.parse(text) as { op: number; id?: string; from?: string };
      if (msg.op === 0 && msg.id !== undefined && msg.from !== undefined) ws.send(`{"op":5,"to":"${msg.from}","id":"${msg.id}","data":{"pad":"${repPad}"}}`);
    });
    let seq = 100_000;
    const to = responder.id;
    const ref: { ws?: WebSocket; me?: string } = {};
    const pair: Pair = {
      send: () => {
        seq++;
        ref.ws?.send(`{"op":0,"to":"${to}","from":"${ref.me ?? ''}","id":"${i}-${seq}","data":{"pad":"${reqPad}"}}`);
      },
    };
    const requester = await connectRelay(CURRENT_URL, (text) => done(pair, !text.startsWith('{"op":5')));
    ref.ws = requester.ws;
    ref.me = requester.id;
    closers.push(() => responder.ws.terminate(), () => requester.ws.terminate());
    return pair;
  })();
}

function sioPair(i: number): Promise<Pair> {
  return (async () => {
    const reqPad = padTo(MESSAGE_BYTES, (pad) => `421["req","AAAAAAAAAAAAAAAAAAAA",{"id":"${i}-100000","pad":"${pad}"}]`);
    const repPad = padTo(MESSAGE_BYTES, (pad) => `431[{"id":"${i}-100000","pad":"${pad}"}]`);
    const responder: Socket = await connectSio(CURRENT_URL);
    responder.on('req', (data: { id: string }, ack: (res: unknown) => void) => ack({ id: data.id, pad: repPad }));
    const requester: Socket = await connectSio(CURRENT_URL);
    const to = responder.id;
    if (to === undefined) throw new Error('socket.io responder has no id');
    let seq = 100_000;
    const pair: Pair = {
      send: () => {
        seq++;
        requester.emit('req', to, { id: `${i}-${seq}`, pad: reqPad }, (res: { error?: string }) => done(pair, res.error !== undefined));
      },
    };
    closers.push(() => responder.disconnect(), () => requester.disconnect());
    return pair;
  })();
}

serve({
  setup: async (p: { url: string; pairs: number }) => {
    CURRENT_URL = p.url;
    const make = impl === 'muster' ? musterPair : impl === 'ws' ? relayPair : impl === 'sio' ? sioPair : undefined;
    if (!make) throw new Error(`P1 has no client for ${impl}`);
    await pool(p.pairs, 50, async (i) => {
      pairs.push(await make(i));
    });
    return { pairs: pairs.length };
  },
  start: (p: { maxMs: number; maxCount: number }) => {
    running = true;
    maxCount = count + p.maxCount;
    deadline = performance.now() + p.maxMs;
    for (const pair of pairs) {
      inFlight++;
      pair.send();
    }
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
