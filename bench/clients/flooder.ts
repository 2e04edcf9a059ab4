/**
 * Flood load generator (bench/flood.ts): one bus service that sends GLOBAL EVENTs of
 * `bytes` as fast as its socket takes them (keeping at most 1 MiB unsent on its side),
 * for `ms`, and reads (and counts) whatever comes back, RATE_LIMITED answers included.
 *
 * flood {url, token, bytes, ms}  → {sent, rateLimited, closed}
 */
import WebSocket from 'ws';
import { emit, serve, sleep } from '../lib/ipc.js';

serve({
  flood: async (p: { url: string; token: string; bytes: number; ms: number }) => {
    const ws = new WebSocket(p.url);
    let rateLimited = 0;
    let closed: number | null = null;
    ws.on('message', (d: Buffer) => {
      if (d.includes('"RATE_LIMITED"')) rateLimited++;
    });
    ws.on('close', (code) => (closed = code));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ op: 1, data: { token: p.token, name: 'flooder' } }));
    await new Promise<void>((resolve) => ws.once('message', () => resolve()));
    const frame = JSON.stringify({ op: 0, event: 'FLOOD', data: 'f'.repeat(Math.max(0, p.bytes - 60)), intent: { target: 'GLOBAL' } });
    let sent = 0;
    const end = performance.now() + p.ms;
    while (performance.now() < end && closed === null) {
      while (ws.bufferedAmount < 1 << 20 && performance.now() < end) {
        ws.send(frame);
        sent++;
      }
      await sleep(1);
    }
    await sleep(200);
    ws.terminate();
    return { sent, rateLimited, closed };
  },
});
emit('ready');
