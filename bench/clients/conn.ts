/**
 * How a load generator connects to each implementation. Every client is a separate
 * socket (no multiplexing); each connect is bounded by a timeout.
 */
import WebSocket from 'ws';
import { io, type Socket } from 'socket.io-client';
import { BUS_TOKEN } from '../lib/constants.js';

export const CONNECT_TIMEOUT_MS = 20_000;

const PING = '{"op":3}';
const PONG = '{"op":4}';

function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => {
      onTimeout();
      reject(new Error(`${what}: no answer within ${ms} ms`));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

export interface WsPeer {
  ws: WebSocket;
  /** The id the server gave this peer (bus service id, or the relay's id). */
  id: string;
}

/**
 * A bus service: IDENTIFY with the token, wait for the server's IDENTIFY (our id),
 * answer every PING with a PONG. `onFrame` gets every other frame's text.
 */
export function connectBus(url: string, onFrame: (text: string, ws: WebSocket) => void, extra: Record<string, unknown> = {}): Promise<WsPeer> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const p = new Promise<WsPeer>((resolve, reject) => {
    let id: string | undefined;
    ws.once('open', () => ws.send(JSON.stringify({ op: 1, data: { token: BUS_TOKEN, ...extra } })));
    ws.on('message', (data: Buffer) => {
      if (data.length === 8 && data.toString() === PING) {
        ws.send(PONG);
        return;
      }
      const text = data.toString();
      if (id === undefined) {
        const msg = JSON.parse(text) as { op?: number; data?: { id?: string } };
        if (msg.op === 1 && typeof msg.data?.id === 'string') {
          id = msg.data.id;
          resolve({ ws, id });
          return;
        }
        reject(new Error(`unexpected first frame ${text.slice(0, 200)}`));
        return;
      }
      onFrame(text, ws);
    });
    ws.once('error', reject);
    ws.once('close', (code: number) => reject(new Error(`closed ${code} before IDENTIFY`)));
  });
  return withTimeout(p, CONNECT_TIMEOUT_MS, 'bus IDENTIFY', () => ws.terminate());
}

/** A raw-relay peer: wait for {"op":"hello","id"}; `onFrame` gets every later frame. */
export function connectRelay(url: string, onFrame: (text: string, ws: WebSocket) => void): Promise<WsPeer> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const p = new Promise<WsPeer>((resolve, reject) => {
    let id: string | undefined;
    ws.on('message', (data: Buffer) => {
      const text = data.toString();
      if (id === undefined) {
        const msg = JSON.parse(text) as { op?: string; id?: string };
        if (msg.op === 'hello' && typeof msg.id === 'string') {
          id = msg.id;
          resolve({ ws, id });
        } else reject(new Error(`unexpected first frame ${text.slice(0, 200)}`));
        return;
      }
      onFrame(text, ws);
    });
    ws.once('error', reject);
    ws.once('close', (code: number) => reject(new Error(`closed ${code} before hello`)));
  });
  return withTimeout(p, CONNECT_TIMEOUT_MS, 'relay hello', () => ws.terminate());
}

/** A Socket.IO client on its own connection (no multiplexing, no reconnection). */
export function connectSio(url: string, auth: Record<string, unknown> = {}): Promise<Socket> {
  const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, auth, timeout: CONNECT_TIMEOUT_MS });
  const p = new Promise<Socket>((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', reject);
  });
  return withTimeout(p, CONNECT_TIMEOUT_MS, 'socket.io connect', () => socket.disconnect());
}

/** Drops a Socket.IO client's TCP connection without a goodbye (as a network failure would). */
export function dropSio(socket: Socket): void {
  const engine = socket.io.engine as unknown as { transport?: { ws?: { terminate?: () => void } } } | undefined;
  const raw = engine?.transport?.ws;
  if (raw?.terminate) raw.terminate();
  else socket.disconnect();
}

/**
 * Runs `fn` for i in [0, n) with at most `concurrency` in flight; bounded by the
 * callers' own timeouts. Resolves when all have settled; rejects on the first failure.
 */
export async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async (): Promise<void> => {
    while (next < n && failed === undefined) {
      const i = next++;
      try {
        await fn(i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  if (failed !== undefined) throw failed instanceof Error ? failed : new Error(String(failed));
}
