/**
 * The Socket.IO 4 peer: WebSocket transport only, no compression.
 *  - P1: "req" (to, data, ack) is emitted to the socket with id `to` with an ack, and
 *    the answer goes back through the requester's ack (four frames per round trip).
 *  - P2: sockets connecting with auth {role: "recv"} join the room "all"; "pub" (data)
 *    is broadcast to the room.
 *
 *   --ping-ms N   engine.io pingInterval (pingTimeout is the same); default 25000
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
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

io.on('connection', (socket) => {
  const auth = socket.handshake.auth as { role?: unknown };
  if (auth.role === 'recv') void socket.join('all');
  socket.on('req', (to: unknown, data: unknown, ack: unknown) => {
    if (typeof ack !== 'function') return;
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
  }),
  summary: () => ({ connections: io.sockets.sockets.size }),
});
emit('ready', { port: (http.address() as AddressInfo).port });
