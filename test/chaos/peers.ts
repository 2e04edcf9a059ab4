/**
 * What the chaos scenarios share: the addresses abuse and health come from, a row of the
 * result table, and the healthy peers and raw requests they measure with.
 */
import net from 'node:net';
import WebSocket from 'ws';
import { SECRETS, type RunningServer } from './server.js';

export const ABUSER = '127.0.0.2';
export const HEALTHY = '127.0.0.1';
/** The authenticated flooding bus sender (not the abuser, whose handshakes the connection flood has used up). */
export const FLOODER = '127.0.0.3';
export const PATHS = ['/bus', '/api/socket', '/sharding', '/ws', '/v2/server/ws'];

export interface Row {
  scenario: string;
  acked?: number;
  lost?: number;
  lockouts: number;
  fiveXx: number;
  p50?: number | undefined;
  p99?: number | undefined;
  notes: string;
  /** Set when the row shows a broken promise outside the three must-be-0 columns. */
  fail?: string;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function pct(xs: number[], p: number): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** Counts 5xx answers seen by any client of a scenario. */
export class Tally {
  fiveXx = 0;
  statuses = new Map<number, number>();
  see(status: number): void {
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    if (status >= 500) this.fiveXx++;
  }
  summary(): string {
    return [...this.statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ');
  }
}

/** An identified bus service from `address`; resolves when IDENTIFY is answered. */
export function busPeer(srv: RunningServer, tally: Tally, address = HEALTHY): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${srv.ws}/bus`, { localAddress: address });
    const t = setTimeout(() => {
      ws.terminate();
      reject(new Error('identify timed out'));
    }, 5000);
    ws.on('unexpected-response', (_req, res) => {
      tally.see(res.statusCode ?? 0);
      clearTimeout(t);
      ws.terminate();
      reject(new Error(`upgrade refused: ${res.statusCode}`));
    });
    ws.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
    ws.on('open', () => ws.send(JSON.stringify({ op: 1, data: { token: SECRETS.bus } })));
    ws.once('message', (d: Buffer) => {
      clearTimeout(t);
      const f = JSON.parse(d.toString()) as { op: number };
      if (f.op === 1) resolve(ws);
      else reject(new Error(`not identified: ${d.toString()}`));
    });
  });
}

/** Valid connects (bus IDENTIFY) and /healthz from the healthy address; returns how many were refused. */
export async function lockouts(srv: RunningServer, tally: Tally, n = 5): Promise<number> {
  let refused = 0;
  for (let i = 0; i < n; i++) {
    try {
      (await busPeer(srv, tally)).close();
    } catch {
      refused++;
    }
  }
  try {
    const r = await fetch(`${srv.base}/healthz`, { signal: AbortSignal.timeout(5000) });
    tally.see(r.status);
    if (r.status !== 200) refused++;
  } catch {
    refused++;
  }
  return refused;
}

/** A healthy bus peer sending PING every 10 ms and timing each PONG, until stopped. */
export async function pinger(srv: RunningServer, tally: Tally): Promise<{ stop: () => Promise<{ rtts: number[]; cut: boolean }> }> {
  const ws = await busPeer(srv, tally);
  const rtts: number[] = [];
  let sentAt: number | undefined;
  let cut = false;
  ws.on('close', () => (cut = true));
  ws.on('message', (d: Buffer) => {
    const f = JSON.parse(d.toString()) as { op: number };
    if (f.op === 4 && sentAt !== undefined) {
      rtts.push(performance.now() - sentAt);
      sentAt = undefined;
    }
  });
  const timer = setInterval(() => {
    if (sentAt !== undefined || ws.readyState !== WebSocket.OPEN) return;
    sentAt = performance.now();
    ws.send('{"op":3}');
  }, 10);
  return {
    stop: async () => {
      clearInterval(timer);
      // A PING still unanswered counts with the time it has waited.
      if (sentAt !== undefined) rtts.push(performance.now() - sentAt);
      ws.close();
      return { rtts, cut };
    },
  };
}

/** Sends raw bytes from the abuser's address; resolves with the HTTP status (0 if none) once the server closes or `waitMs` passes. */
export function rawRequest(srv: RunningServer, text: string, opts: { waitMs?: number; destroyAfterWrite?: boolean } = {}): Promise<number> {
  const port = Number(new URL(srv.base).port);
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port, localAddress: ABUSER });
    let buf = '';
    const done = (): void => {
      clearTimeout(t);
      sock.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
      resolve(m ? Number(m[1]) : 0);
    };
    const t = setTimeout(done, opts.waitMs ?? 2000);
    sock.on('error', done);
    sock.on('close', done);
    sock.on('data', (b: Buffer) => {
      buf += b.toString('latin1');
      if (/\r\n\r\n/.test(buf)) done();
    });
    sock.on('connect', () => {
      sock.write(text);
      if (opts.destroyAfterWrite) setImmediate(done);
    });
  });
}

export function upgradeHead(path: string, headers: Record<string, string>, method = 'GET'): string {
  const base: Record<string, string> = {
    Host: '127.0.0.1',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    'Sec-WebSocket-Version': '13',
    ...headers,
  };
  return `${method} ${path} HTTP/1.1\r\n${Object.entries(base)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}
