/**
 * Micro-bench of one server-to-client text frame over real loopback sockets: `ws`'s own
 * send (a header buffer and the payload, two writes under a cork, one `writev`) against
 * the transport's (src/transport/frame.ts: the whole frame in one buffer, one write),
 * each with the payload as a Buffer (a relayed frame) and as a string (a frame Muster
 * writes itself). 100 sockets, one frame to each per event-loop turn, as in P1; the
 * receiving ends are in a child process. Prints the process's CPU (user + system) per
 * frame, per method, for each round after the first.
 *
 *   npx tsx bench/send-cost.ts [--rounds 4] [--turns 1000]
 *
 * The kernel's send is most of each figure; the differences are the JavaScript and the
 * per-write work in Node around it. Compare rounds, not single numbers.
 */
import { fork } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';
import { textFrame } from '../src/transport/frame.js';

const SOCKETS = 100;
const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { rounds: { type: 'string', default: '4' }, turns: { type: 'string', default: '1000' }, client: { type: 'string' } },
});

if (values.client) {
  let open = 0;
  for (let i = 0; i < SOCKETS; i++) {
    const ws = new WebSocket(`ws://127.0.0.1:${values.client}`, { perMessageDeflate: false });
    ws.on('open', () => {
      if (++open === SOCKETS) process.send?.('ready');
    });
  }
} else {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  const sockets: WebSocket[] = [];
  wss.on('connection', (ws) => sockets.push(ws));
  await new Promise((r) => wss.once('listening', r));
  const port = (wss.address() as AddressInfo).port;
  const child = fork(process.argv[1] as string, ['--client', String(port)], { execArgv: process.execArgv });
  await new Promise((r) => child.once('message', r));

  const payload = Buffer.from(JSON.stringify({ op: 'EVENT', intent: 'DIRECT', to: 'a'.repeat(36), id: 12_345, data: 'x'.repeat(60), source: 'b'.repeat(36) }));
  const text = payload.toString();
  const opts = { binary: false, compress: false };
  const tcp = (ws: WebSocket) => (ws as unknown as { _socket: NodeJS.WritableStream })._socket;
  const methods: Record<string, (ws: WebSocket) => void> = {
    'ws send, Buffer': (ws) => ws.send(payload, opts),
    'ws send, string': (ws) => ws.send(text, opts),
    'one buffer, Buffer': (ws) => tcp(ws).write(textFrame(payload)),
    'one buffer, string': (ws) => tcp(ws).write(textFrame(text)),
  };
  const results: Record<string, string[]> = {};
  const turns = Number(values.turns);
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const [name, send] of Object.entries(methods)) {
      const start = process.cpuUsage();
      for (let t = 0; t < turns; t++) {
        for (const ws of sockets) send(ws);
        await new Promise((r) => setImmediate(r));
      }
      const used = process.cpuUsage(start);
      if (round > 0) (results[name] ??= []).push(((used.user + used.system) / (turns * SOCKETS)).toFixed(2));
    }
  }
  console.log(`CPU µs per frame (${SOCKETS} sockets, ${payload.length}-byte payload), rounds after the first:`);
  for (const [name, runs] of Object.entries(results)) console.log(`  ${name.padEnd(20)} ${runs.join(' / ')}`);
  child.kill();
  await new Promise<void>((r) => wss.close(() => r()));
}
