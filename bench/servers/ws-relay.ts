/**
 * The floor for P1/P3/P7: a minimal raw `ws` relay doing the same routing as the bus
 * DIRECT path: parse the JSON text, look the target up by id, forward the frame.
 * On connect it assigns an id and sends {"op":"hello","id":"…"}.
 *
 *   --ping-ms N   ws-level ping every N ms (the usual isAlive pattern); 0 = none
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { childArgs, emit, serve } from '../lib/ipc.js';
import { serverHandlers } from './common.js';

const args = childArgs();
const pingMs = Number(args['ping-ms'] ?? 0);

const byId = new Map<string, WebSocket>();
const alive = new WeakSet<WebSocket>();
let seq = 0;

const http = createServer((_req, res) => {
  res.writeHead(404).end();
});
const wss = new WebSocketServer({ server: http, perMessageDeflate: false, clientTracking: false, maxPayload: 1 << 20 });

wss.on('connection', (ws: WebSocket) => {
  const id = String(++seq);
  byId.set(id, ws);
  alive.add(ws);
  ws.on('message', (data: RawData, isBinary: boolean) => {
    let msg: unknown;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return;
    }
    const to = typeof msg === 'object' && msg !== null ? (msg as { to?: unknown }).to : undefined;
    if (typeof to !== 'string') return;
    const target = byId.get(to);
    if (target) target.send(data, { binary: isBinary });
  });
  ws.on('pong', () => alive.add(ws));
  ws.on('error', () => ws.terminate());
  ws.on('close', () => {
    if (byId.get(id) === ws) byId.delete(id);
  });
  ws.send(`{"op":"hello","id":"${id}"}`);
});

if (pingMs > 0) {
  setInterval(() => {
    for (const ws of byId.values()) {
      if (!alive.has(ws)) {
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, pingMs).unref();
}

await new Promise<void>((resolve) => http.listen(Number(args.port ?? 0), '127.0.0.1', resolve));

serve({
  ...serverHandlers(async () => {
    for (const ws of byId.values()) ws.terminate();
    await new Promise<void>((r) => http.close(() => r()));
  }),
  summary: () => ({ connections: byId.size }),
});
emit('ready', { port: (http.address() as AddressInfo).port });
