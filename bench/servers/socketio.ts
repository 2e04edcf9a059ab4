/**
 * The Socket.IO 4 peer: WebSocket transport only, no compression.
 *  - P1: "req" (to, data, ack) is emitted to the socket with id `to` with an ack, and
 *    the answer goes back through the requester's ack (four frames per round trip).
 *  - P2: sockets connecting with auth {role: "recv"} join the room "all"; "pub" (data)
 *    is broadcast to the room.
 *
 *  - P8 (--redis): several servers share one Redis through `@socket.io/redis-adapter`;
 *    "req" is then emitted to the room of the target socket's id, wherever that socket
 *    is connected, with an ack across servers (`io.to(id).timeout(…).emit`), and the
 *    single answer goes back through the requester's ack.
 *
 *   --ping-ms N   engine.io pingInterval (pingTimeout is the same); default 25000
 *   --redis URL   share rooms with other servers on this Redis (P8)
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { Server } from 'socket.io';
import { childArgs, emit, serve } from '../lib/ipc.js';
import { serverHandlers } from './common.js';

const args = childArgs();
const pingMs = Number(args['ping-ms'] ?? 25_000);

const http = createServer();
const io = new Server(http, {
  transports: ['websocket'],
  serveClient: false,
  perMessageDeflate: false,
  pingInterval: pingMs,
  pingTimeout: pingMs,
});

type Ack = (res: unknown) => void;

const redisUrl = args.redis;
const redis = redisUrl ? [new Redis(redisUrl), new Redis(redisUrl)] : [];
if (redis[0] && redis[1]) io.adapter(createAdapter(redis[0], redis[1]));

io.on('connection', (socket) => {
  const auth = socket.handshake.auth as { role?: unknown };
  if (auth.role === 'recv') void socket.join('all');
  socket.on('req', (to: unknown, data: unknown, ack: unknown) => {
    if (typeof ack !== 'function') return;
    if (redisUrl) {
      if (typeof to !== 'string') return;
      io.to(to)
        .timeout(5000)
        .emit('req', data, (err: unknown, res: unknown[]) => (ack as Ack)(err || res.length === 0 ? { error: 'NO_ROUTE' } : res[0]));
      return;
    }
    const target = typeof to === 'string' ? io.sockets.sockets.get(to) : undefined;
    if (!target) {
      (ack as Ack)({ error: 'NO_ROUTE' });
      return;
    }
    target.emit('req', data, (res: unknown) => (ack as Ack)(res));
  });
  socket.on('pub', (data: unknown) => {
    io.to('all').emit('msg', data);
  });
});

await new Promise<void>((resolve) => http.listen(Number(args.port ?? 0), '127.0.0.1', resolve));

serve({
  ...serverHandlers(async () => {
    io.disconnectSockets(true);
    await new Promise<void>((r) => {
      void io.close(() => r());
    });
    for (const c of redis) c.disconnect();
  }),
  summary: () => ({ connections: io.sockets.sockets.size }),
});
emit('ready', { port: (http.address() as AddressInfo).port });
