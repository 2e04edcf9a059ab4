/**
 * P3 / P7 load generator: many idle connections that only answer heartbeats, as
 * minimal raw WebSocket peers (clients/raw.ts): Muster bus services (IDENTIFY, PONG to
 * every PING), raw ws relay peers (hello, pong), Socket.IO clients (open, "40", "3").
 *
 * connect {impl, url, n, concurrency, localAddress?, timeoutMs?}
 *                                      opens n more connections (ready = identified),
 *                                      from `localAddress` if given (P7: 127.0.0.x),
 *                                      all within `timeoutMs` (default 40 s); with
 *                                      `tolerant`, a connection that fails all its
 *                                      tries is counted (`failed`) instead of failing
 *                                      the call
 * storm                                drops every connection at once (no close
 *                                      handshake, as a network failure) and reconnects
 *                                      them all at once; answers with the time taken
 * count                                connections held, and how many are still open
 * close                                drops everything
 */
import type { Impl } from '../lib/constants.js';
import { emit, serve, sleep } from '../lib/ipc.js';
import { CONNECT_TIMEOUT_MS, pool } from './conn.js';
import { openRaw, type RawConn } from './raw.js';

type Conn = RawConn;

let conns: Conn[] = [];
let target: { impl: Impl; url: string } | undefined;
let localAddress: string | undefined;

function open(impl: Impl, url: string): Promise<Conn> {
  return openRaw(impl, url, CONNECT_TIMEOUT_MS, localAddress);
}

/** Opens a connection, retrying a failed attempt (bounded: 5 tries, 100–300 ms apart). */
async function openWithRetry(impl: Impl, url: string, deadline: number): Promise<Conn> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < 5 && performance.now() < deadline; attempt++) {
    try {
      return await open(impl, url);
    } catch (err) {
      lastErr = err;
      retries++;
      await sleep(100 + Math.random() * 200);
    }
  }
  throw lastErr instanceof Error ? lastErr : new Error('connect failed');
}
let retries = 0;

function drop(c: Conn): void {
  c.drop();
}

serve({
  connect: async (p: { impl: Impl; url: string; n: number; concurrency: number; localAddress?: string; timeoutMs?: number; tolerant?: boolean }) => {
    target = { impl: p.impl, url: p.url };
    localAddress = p.localAddress;
    const t0 = performance.now();
    const deadline = t0 + (p.timeoutMs ?? 40_000);
    const fresh: Conn[] = [];
    let failed = 0;
    await pool(p.n, p.concurrency, async () => {
      try {
        fresh.push(await openWithRetry(p.impl, p.url, deadline));
      } catch (err) {
        // tolerant (P7): count it and go on, so the report says how many were held.
        if (!p.tolerant) throw err;
        failed++;
      }
    });
    conns.push(...fresh);
    return { open: conns.length, failed, retries, ms: performance.now() - t0 };
  },
  storm: async () => {
    if (!target) throw new Error('storm before connect');
    const { impl, url } = target;
    const n = conns.length;
    const t0 = performance.now();
    retries = 0;
    for (const c of conns) drop(c);
    conns = [];
    const deadline = t0 + 40_000;
    const fresh: Conn[] = [];
    // All at once: one attempt per connection in flight, no cap.
    await pool(n, n, async () => {
      fresh.push(await openWithRetry(impl, url, deadline));
    });
    conns = fresh;
    return { open: conns.length, ms: performance.now() - t0, retries };
  },
  count: () => ({ open: conns.length, alive: conns.filter((c) => c.open()).length }),
  close: () => {
    for (const c of conns) drop(c);
    const n = conns.length;
    conns = [];
    return { closed: n };
  },
  exit: () => {
    for (const c of conns) drop(c);
    setTimeout(() => process.exit(0), 50);
    return true;
  },
});
emit('ready', null);
