/**
 * P6 load generator: HTTP GET in a closed loop over keep-alive connections
 * (node:http, one request in flight per connection), bounded by time and count.
 *
 * run {port, path, connections, ms, maxRequests, expectBytes}
 *   answers {requests, ms, bytes, bad}: responses received inside the run, their
 *   body bytes, and how many were not 200 or not `expectBytes` long (0 = any length)
 */
import { Agent, request } from 'node:http';
import { emit, serve } from '../lib/ipc.js';
import { HOST } from '../lib/net.js';

const agents = new Map<number, Agent>();

function get(agent: Agent, port: number, path: string): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port, path, agent, method: 'GET' }, (res) => {
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

serve({
  run: async (p: { port: number; path: string; connections: number; ms: number; maxRequests: number; expectBytes: number }) => {
    let agent = agents.get(p.connections);
    if (!agent) agents.set(p.connections, (agent = new Agent({ keepAlive: true, maxSockets: p.connections })));
    let requests = 0;
    let bytes = 0;
    let bad = 0;
    let started = 0;
    const t0 = performance.now();
    const end = t0 + p.ms;
    const loop = async (): Promise<void> => {
      while (performance.now() < end && started < p.maxRequests) {
        started++;
        const r = await get(agent, p.port, p.path);
        requests++;
        bytes += r.bytes;
        if (r.status !== 200 || (p.expectBytes > 0 && r.bytes !== p.expectBytes)) bad++;
      }
    };
    await Promise.all(Array.from({ length: p.connections }, loop));
    return { requests, ms: performance.now() - t0, bytes, bad };
  },
});
emit('ready', {});
