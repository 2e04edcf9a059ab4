/**
 * P8's floor: a request and its reply each crossing Redis pub/sub once, with no server
 * in between. A "responder" connection pair subscribes to `bench:req` and publishes each
 * message it gets to `bench:rep`; the requester subscribes to `bench:rep`. Both sides
 * live in this process (as P8's pairs do in theirs); ~150-byte messages.
 *
 *   --url redis://…
 *
 * paced {rate, ms}   as clients/cross.ts: open loop, latencies p50/p99/max (ms)
 */
import { Redis } from 'ioredis';
import { MESSAGE_BYTES } from '../lib/constants.js';
import { childArgs, emit, serve, sleep } from '../lib/ipc.js';

const url = childArgs().url ?? '';
const respSub = new Redis(url);
const respPub = new Redis(url);
const reqSub = new Redis(url);
const reqPub = new Redis(url);
const pad = 'x'.repeat(MESSAGE_BYTES - 20);
const waiting = new Map<string, number>();
const lat: number[] = [];

await respSub.subscribe('bench:req');
respSub.on('message', (_ch: string, msg: string) => void respPub.publish('bench:rep', msg));
await reqSub.subscribe('bench:rep');
reqSub.on('message', (_ch: string, msg: string) => {
  const id = msg.slice(0, msg.indexOf(' '));
  const t = waiting.get(id);
  if (t === undefined) return;
  waiting.delete(id);
  lat.push(performance.now() - t);
});

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

serve({
  paced: async (p: { rate: number; ms: number }) => {
    lat.length = 0;
    let sent = 0;
    const total = Math.round((p.rate * p.ms) / 1000);
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - t0) * p.rate) / 1000));
        while (sent < due) {
          const id = String(sent++);
          waiting.set(id, performance.now());
          void reqPub.publish('bench:req', `${id} ${pad}`);
        }
        if (sent >= total) {
          clearInterval(tick);
          resolve();
        }
      }, 1);
    });
    const until = performance.now() + 5000;
    while (waiting.size > 0 && performance.now() < until) await sleep(5);
    const lost = waiting.size;
    waiting.clear();
    const sorted = [...lat].sort((a, b) => a - b);
    return { sent, answered: sent - lost, errors: 0, p50: pct(sorted, 50), p99: pct(sorted, 99), max: sorted[sorted.length - 1] ?? Number.NaN };
  },
  exit: () => {
    for (const c of [respSub, respPub, reqSub, reqPub]) c.disconnect();
    setTimeout(() => process.exit(0), 50);
    return true;
  },
});
emit('ready', {});
