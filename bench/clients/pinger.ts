/**
 * P10's healthy peer: one identified bus service that sends PING (`{"op":3}`) every
 * `intervalMs` and times each PONG, one in flight at a time (a PING due while one is
 * out waits for it, and its wait counts).
 *
 * setup {url}         connects and identifies
 * start {intervalMs}  starts a window: samples are collected from now on
 * stop                ends the window; answers {n, p50, p99, max} in ms
 * close
 */
import WebSocket from 'ws';
import { BUS_TOKEN } from '../lib/constants.js';
import { emit, serve } from '../lib/ipc.js';

let ws: WebSocket | undefined;
let samples: number[] = [];
let timer: NodeJS.Timeout | undefined;
let sentAt: number | undefined;
let due = false;

function ping(): void {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  if (sentAt !== undefined) {
    due = true;
    return;
  }
  sentAt = performance.now();
  ws.send('{"op":3}');
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

serve({
  setup: (p: { url: string }) =>
    new Promise<boolean>((resolve, reject) => {
      const sock = new WebSocket(p.url);
      ws = sock;
      sock.on('error', reject);
      sock.on('open', () => sock.send(JSON.stringify({ op: 1, data: { token: BUS_TOKEN, name: 'healthy' } })));
      sock.on('close', (code) => console.error(`healthy peer closed: ${code}`));
      sock.on('message', (data: Buffer) => {
        const text = data.toString();
        if (text === '{"op":4}') {
          if (sentAt !== undefined) samples.push(performance.now() - sentAt);
          sentAt = undefined;
          if (due) {
            due = false;
            ping();
          }
        } else if (text.startsWith('{"op":3')) {
          sock.send('{"op":4}');
        } else if (text.includes('"op":1')) {
          resolve(true);
        }
      });
    }),
  start: (p: { intervalMs: number }) => {
    samples = [];
    clearInterval(timer);
    timer = setInterval(ping, p.intervalMs);
    return true;
  },
  stop: () => {
    clearInterval(timer);
    timer = undefined;
    const s = samples.slice().sort((a, b) => a - b);
    return { n: s.length, p50: quantile(s, 0.5), p99: quantile(s, 0.99), max: s.length ? (s[s.length - 1] as number) : Number.NaN, open: ws?.readyState === WebSocket.OPEN };
  },
  close: () => {
    ws?.close();
    return true;
  },
});
emit('ready', {});
