import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer, type WebSocket } from 'ws';
import { BusClient, DiscodoClient, GameServerClient, ShardingControl } from '../../src/client/index.js';
import { PendingRequests } from '../../src/client/pending.js';
import { ReconnectingSocket } from '../../src/client/socket.js';
import { ManualClock } from '../../src/core/clock.js';
import { busCloseCodes } from '../../src/protocols/bus/messages.js';

/** Waits (round trips on the event loop, no fixed delay) until `cond` holds. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  expect(cond()).toBe(true);
}

/** Lets pending promise reactions run (no real time passes). */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('PendingRequests', () => {
  it('rejects with the typed timeout error at the deadline on the injected clock, not before', async () => {
    const clock = new ManualClock(0);
    const pending = new PendingRequests<string>(clock);
    let outcome: unknown;
    pending.wait('a', 1000, () => new RangeError('late')).catch((e: unknown) => (outcome = e));
    clock.advance(999);
    await flush();
    expect(outcome).toBeUndefined();
    clock.advance(1);
    await flush();
    expect(outcome).toBeInstanceOf(RangeError);
    expect(pending.size).toBe(0);
  });

  it('an answer settles the waiter and stops its deadline; failAll rejects the rest', async () => {
    const clock = new ManualClock(0);
    const pending = new PendingRequests<number, string>(clock);
    const a = pending.wait(1, 100, () => new Error('timeout'));
    const b = pending.wait(2, 100, () => new Error('timeout'));
    expect(pending.resolve(1, 'yes')).toBe(true);
    expect(pending.resolve(1, 'twice')).toBe(false);
    await expect(a).resolves.toBe('yes');
    pending.failAll(new Error('gone'));
    await expect(b).rejects.toThrow('gone');
    expect(clock.pending).toBe(0);
  });

  it('finds a waiter by predicate (answers without an id)', async () => {
    const pending = new PendingRequests<{ op: string }>(new ManualClock(0));
    const key = { op: 'STATUS' };
    const p = pending.wait(key, 100, () => new Error('timeout'));
    expect(pending.find((k) => k.op === 'QUEUE')).toBeUndefined();
    pending.resolve(pending.find((k) => k.op === 'STATUS')!, 'ok');
    await expect(p).resolves.toBe('ok');
  });
});

describe('ReconnectingSocket', () => {
  const handlers = { message: () => undefined, close: () => undefined };

  it('reads the retry decision from the close-code table; unlisted codes are retried', () => {
    const s = new ReconnectingSocket({ url: 'ws://127.0.0.1:1', closeCodes: busCloseCodes }, handlers);
    expect(s.shouldRetry(4004, '')).toBe(false); // IDENTIFY_FAILED
    expect(s.shouldRetry(1009, '')).toBe(false); // MESSAGE_TOO_BIG
    expect(s.shouldRetry(4008, '')).toBe(true); // SLOW_CONSUMER
    expect(s.shouldRetry(1006, '')).toBe(true); // abnormal drop, not in the table
  });

  it("a client's own verdict comes first; reconnect: false never retries", () => {
    const s = new ReconnectingSocket({ url: 'ws://127.0.0.1:1', closeCodes: busCloseCodes, retry: (c) => (c === 4004 ? true : undefined) }, handlers);
    expect(s.shouldRetry(4004, '')).toBe(true);
    expect(s.shouldRetry(4002, '')).toBe(false);
    const off = new ReconnectingSocket({ url: 'ws://127.0.0.1:1', closeCodes: busCloseCodes, reconnect: false }, handlers);
    expect(off.shouldRetry(1006, '')).toBe(false);
  });

  it('backs off on the injected clock: growing jittered delays, a minimum, a reset on success, a cancel', () => {
    const clock = new ManualClock(0);
    const s = new ReconnectingSocket({ url: 'ws://127.0.0.1:1', closeCodes: {}, reconnect: { minMs: 100, maxMs: 1000, random: () => 0.999999 }, clock }, handlers);
    let reopened = 0;
    const reopen = (): void => void reopened++;
    expect(s.reconnectLater(reopen)).toEqual({ attempt: 1, delay: 100 });
    clock.advance(99);
    expect(reopened).toBe(0);
    clock.advance(1);
    expect(reopened).toBe(1);
    expect(s.reconnectLater(reopen)).toEqual({ attempt: 2, delay: 200 });
    expect(s.reconnectLater(reopen, 5000)).toEqual({ attempt: 3, delay: 5000 }); // replaces the previous timer
    clock.advance(4999);
    expect(reopened).toBe(1);
    s.cancelReconnect();
    clock.advance(10_000);
    expect(reopened).toBe(1);
    s.succeeded();
    expect(s.reconnectLater(reopen).attempt).toBe(1);
  });
});

/** A fake server that answers each client's first frame with `answer` (if any), then closes with `code`. */
describe('clients stay down after a close their dialect marks not retryable', () => {
  let wss: WebSocketServer | undefined;
  afterEach(async () => {
    for (const c of wss?.clients ?? []) c.terminate();
    await new Promise((r) => wss?.close(r));
    wss = undefined;
  });

  async function server(onConnection: (ws: WebSocket) => void): Promise<string> {
    wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    wss.on('connection', onConnection);
    await once(wss, 'listening');
    return `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  }

  it('bus: 1009 (MESSAGE_TOO_BIG) is not retried, 4008 (SLOW_CONSUMER) is', async () => {
    for (const [code, retried] of [
      [1009, false],
      [4008, true],
    ] as const) {
      const url = await server((ws) => ws.once('message', () => ws.close(code, 'test')));
      const clock = new ManualClock(0);
      const c = new BusClient({ url, token: 't', clock });
      let reconnecting = 0;
      c.on('reconnecting', () => reconnecting++);
      const closed = once(c, 'close');
      await expect(c.connect()).rejects.toThrow(String(code));
      await closed;
      expect(reconnecting).toBe(retried ? 1 : 0);
      expect(clock.pending).toBe(retried ? 1 : 0);
      await c.close();
      await new Promise((r) => wss?.close(r));
    }
  });

  it('discodo: 1007 is not retried; gamelist: 1008 is retried only when the reason is a kick', async () => {
    let url = await server((ws) => ws.close(1007, 'bad utf-8'));
    const d = new DiscodoClient({ url, password: 'p', userId: '1', clock: new ManualClock(0) });
    let reconnecting = 0;
    d.on('reconnecting', () => reconnecting++);
    await expect(d.connect()).rejects.toThrow('1007');
    expect(reconnecting).toBe(0);
    await new Promise((r) => wss?.close(r));

    for (const [reason, retried] of [
      ['kicked by an operator', true],
      ['invalid metadata', false],
    ] as const) {
      url = await server((ws) => ws.once('message', () => ws.close(1008, reason)));
      const clock = new ManualClock(0);
      const g = new GameServerClient({ url, regToken: 'r', info: { name: 'n', desc: '', port: 1, map: 'm', playlist: 'p', curPlayers: 0, maxPlayers: 8, gameState: 0 }, clock });
      let n = 0;
      g.on('reconnecting', () => n++);
      await expect(g.connect()).rejects.toThrow();
      expect(n).toBe(retried ? 1 : 0);
      await g.close();
      await new Promise((r) => wss?.close(r));
    }
  });

  it('discodo heartbeats on the injected clock: HEARTBEAT every HELLO interval, and a silent node is cut after three', async () => {
    const seen: string[] = [];
    let peer: WebSocket | undefined;
    const url = await server((ws) => {
      peer = ws;
      ws.on('message', (m) => seen.push(JSON.parse(String(m)).op as string));
      ws.send(JSON.stringify({ op: 'HELLO', d: { heartbeat_interval: 10, version: 't' } }));
    });
    const clock = new ManualClock(0);
    const d = new DiscodoClient({ url, password: 'p', userId: '1', reconnect: false, clock });
    d.connect().catch(() => undefined);
    await until(() => seen.includes('IDENTIFY'));
    clock.advance(10_000);
    await until(() => seen.includes('HEARTBEAT'));
    expect(seen.filter((op) => op === 'HEARTBEAT')).toHaveLength(1);
    const closed = once(d, 'close');
    clock.advance(30_000); // nothing from the node for 3 intervals (HELLO was at 0)
    await closed;
    expect(peer).toBeDefined();
  });

  it('sharding: 1009 ends the CONTROL with an error instead of a reconnect loop', async () => {
    const url = await server((ws) => ws.close(1009, 'too big'));
    const clock = new ManualClock(0);
    const c = new ShardingControl({ url, authorization: 'k', name: 'a', start: () => undefined, stop: () => undefined, clock });
    const errors: Error[] = [];
    c.on('error', (e: Error) => errors.push(e));
    let reconnecting = 0;
    c.on('reconnecting', () => reconnecting++);
    await expect(c.connect()).rejects.toThrow(/1009.*not retried/);
    expect(reconnecting).toBe(0);
    expect(errors).toHaveLength(1);
    await c.close();
  });
});
