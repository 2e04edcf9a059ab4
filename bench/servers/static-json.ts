/**
 * The peer for P6: the same HTTP stack as Muster (fastify, same version, logger off)
 * answering GET /v2/servers with a fixed body: the bytes Muster itself answered for
 * the same request, handed over by the runner (method `setBody`). What is left of the
 * difference is the list route's own work: query parsing, the snapshot, the page,
 * serializing it, the rate limit.
 */
import Fastify from 'fastify';
import { emit, serve } from '../lib/ipc.js';
import { HOST } from '../lib/net.js';
import { serverHandlers } from './common.js';

const bodies = new Map<string, Buffer>();
const app = Fastify({ logger: false });
app.get('/v2/servers', (req, reply) => {
  const q = req.query as Record<string, string | undefined>;
  const body = bodies.get(q.limit ?? '');
  if (!body) return reply.code(404).send({ error: 'NOT_FOUND' });
  return reply.header('content-type', 'application/json; charset=utf-8').send(body);
});
await app.listen({ host: HOST, port: 0 });
const addr = app.server.address();
const port = typeof addr === 'object' && addr ? addr.port : 0;

serve({
  ...serverHandlers(() => app.close()),
  /** The body to answer for `?limit=<limit>`. */
  setBody: (p: { limit: string; body: string }) => {
    bodies.set(p.limit, Buffer.from(p.body, 'utf8'));
    return bodies.get(p.limit)?.length ?? 0;
  },
});
emit('ready', { port });
