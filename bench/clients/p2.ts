/**
 * P2 load generator: fan-out.
 *
 *   --impl muster | nats | sio   --role recv | pub
 *
 * recv: N receivers on their own connections, counting deliveries; every
 *       `reportEvery` deliveries it emits "progress" (the runner turns that into credit
 *       for the publisher, so the publisher never runs more than a window ahead).
 * pub:  one publisher sending ~150-byte messages while fewer than `window` messages
 *       are unacknowledged; bounded by a message count and a deadline.
 */
import WebSocket from 'ws';
import { connect as natsConnect, type NatsConnection } from 'nats.ws';
import type { Socket } from 'socket.io-client';
import { MESSAGE_BYTES, padTo, type Impl } from '../lib/constants.js';
import { childArgs, emit, serve } from '../lib/ipc.js';
import { connectBus, connectSio, pool } from './conn.js';

// nats.ws expects a browser-style WebSocket; Node 20 has none built in.
(globalThis as { WebSocket?: unknown }).WebSocket = WebSocket;

const args = childArgs();
const impl = (args.impl ?? 'muster') as Impl;
const role = args.role ?? 'recv';
const SUBJECT = 'bench.global';

const closers: Array<() => void> = [];

// ---- receivers ----
let delivered = 0;
let reportEvery = 1000;
let nextReport = 1000;
function onDelivery(): void {
  delivered++;
  if (delivered >= nextReport) {
    nextReport = delivered + reportEvery;
    emit('progress', delivered);
  }
}

async function connectReceiver(url: string): Promise<void> {
  switch (impl) {
    case 'muster': {
      const p = await connectBus(url, onDelivery);
      closers.push(() => p.ws.terminate());
      return;
    }
    case 'nats': {
      const nc = await natsConnect({ servers: url, maxReconnectAttempts: 0, reconnect: false });
      nc.subscribe(SUBJECT, { callback: onDelivery });
      await nc.flush();
      closers.push(() => void nc.close());
      return;
    }
    case 'sio': {
      const s = await connectSio(url, { role: 'recv' });
      s.on('msg', onDelivery);
      closers.push(() => s.disconnect());
      return;
    }
    default:
      throw new Error(`P2 has no receiver for ${impl}`);
  }
}

// ---- publisher ----
let publish: ((seq: number) => void) | undefined;
let sent = 0;
let acked = 0;
let window = 32;
let running = false;
let maxSent = 0;
let deadline = 0;

function pump(): void {
  if (!publish) return;
  while (running && sent - acked < window && sent < maxSent && performance.now() < deadline) publish(++sent);
  if (running && (sent >= maxSent || performance.now() >= deadline)) running = false;
}

async function connectPublisher(url: string): Promise<void> {
  switch (impl) {
    case 'muster': {
      const pad = padTo(MESSAGE_BYTES, (p) => `{"op":0,"event":"TICK","intent":{"target":"GLOBAL"},"data":{"seq":1000000,"pad":"${p}"}}`);
      const p = await connectBus(url, () => undefined);
      publish = (seq) => p.ws.send(`{"op":0,"event":"TICK","intent":{"target":"GLOBAL"},"data":{"seq":${seq},"pad":"${pad}"}}`);
      closers.push(() => p.ws.terminate());
      return;
    }
    case 'nats': {
      const nc: NatsConnection = await natsConnect({ servers: url, maxReconnectAttempts: 0, reconnect: false });
      const pad = padTo(MESSAGE_BYTES - 40, (p) => `{"seq":1000000,"pad":"${p}"}`);
      const enc = new TextEncoder();
      publish = (seq) => nc.publish(SUBJECT, enc.encode(`{"seq":${seq},"pad":"${pad}"}`));
      closers.push(() => void nc.close());
      return;
    }
    case 'sio': {
      const s: Socket = await connectSio(url);
      const pad = padTo(MESSAGE_BYTES, (p) => `42["msg",{"seq":1000000,"pad":"${p}"}]`);
      publish = (seq) => s.emit('pub', { seq, pad });
      closers.push(() => s.disconnect());
      return;
    }
    default:
      throw new Error(`P2 has no publisher for ${impl}`);
  }
}

serve({
  setup: async (p: { url: string; n: number; reportEvery: number }) => {
    if (role === 'pub') {
      await connectPublisher(p.url);
      return { ok: true };
    }
    reportEvery = p.reportEvery;
    nextReport = delivered + reportEvery;
    await pool(p.n, 50, () => connectReceiver(p.url));
    return { receivers: p.n };
  },
  // publisher
  start: (p: { window: number; maxMessages: number; maxMs: number }) => {
    window = p.window;
    maxSent = sent + p.maxMessages;
    deadline = performance.now() + p.maxMs;
    running = true;
    pump();
    return true;
  },
  credit: (p: { acked: number }) => {
    if (p.acked > acked) acked = p.acked;
    pump();
  },
  stop: () => {
    running = false;
    return { sent };
  },
  // receivers
  count: () => ({ count: delivered, sent }),
  exit: () => {
    running = false;
    for (const c of closers) c();
    setTimeout(() => process.exit(0), 50);
    return true;
  },
});
emit('ready', { impl, role });
