/**
 * The flooding bus sender of `npm run chaos`'s flood scenario, in a process of its own
 * so that its send loop does not slow the healthy peers' clocks in the parent.
 *
 *   tsx test/chaos/flooder.ts <ws-url> <token> <local-address> <duration-ms>
 *
 * Identifies, sends GLOBAL EVENTs as fast as its own socket drains for the duration,
 * reading every answer, then closes with 1000 and, once the server has answered the close,
 * prints one JSON line (FloodResult).
 */
import WebSocket from 'ws';

export interface FloodResult {
  sent: number;
  rateLimited: number;
  /** Other REPLY errors (op 5 with data.error), by error. */
  otherErrors: Record<string, number>;
  /** Close code if the server closed the sender during the flood. */
  closedByServer?: number;
  closeReason?: string;
  error?: string;
}

const [url, token, localAddress, duration] = process.argv.slice(2) as [string, string, string, string];
const result: FloodResult = { sent: 0, rateLimited: 0, otherErrors: {} };
const ws = new WebSocket(url, { localAddress });
let flooding = false;
let done = false;

const finish = (): void => {
  if (done) return;
  done = true;
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
};

ws.on('error', (err) => {
  result.error = err.message;
  finish();
});
ws.on('close', (code, reason) => {
  if (flooding) {
    result.closedByServer = code;
    result.closeReason = reason.toString();
  }
  finish();
});
ws.on('open', () => ws.send(JSON.stringify({ op: 1, data: { token } })));
ws.on('message', (d: Buffer) => {
  const f = JSON.parse(d.toString()) as { op: number; data?: { error?: string } };
  if (f.op === 1 && !flooding) return void flood();
  const err = f.op === 5 ? f.data?.error : undefined;
  if (err === 'RATE_LIMITED') result.rateLimited++;
  else if (err !== undefined) result.otherErrors[err] = (result.otherErrors[err] ?? 0) + 1;
});

function flood(): void {
  flooding = true;
  const payload = JSON.stringify({ op: 0, event: 'FLOOD', data: 'x'.repeat(512) });
  const stopAt = Date.now() + Number(duration);
  const tick = (): void => {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() >= stopAt) {
      flooding = false;
      // The server's close frame ends it ('close' above). A server that never answers it
      // is caught by the runner, which kills this process and reports it failed.
      ws.close(1000, 'flood over');
      return;
    }
    // Keep this socket's own buffer bounded: the server sees a steady flood.
    if (ws.bufferedAmount < 1 << 20) {
      for (let i = 0; i < 200; i++) ws.send(payload);
      result.sent += 200;
    }
    setImmediate(tick);
  };
  tick();
}
