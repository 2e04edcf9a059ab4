import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { Connection } from '../../src/core/connection.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { isSocket, WsSocket } from '../../src/core/socket.js';
import { FakeSocket } from '../support/fake-socket.js';

/** Connection over the narrow Socket interface, with no `ws` underneath. */

function make(frameLimits?: { preAuth: number; max: number }) {
  const clock = new ManualClock();
  const sock = new FakeSocket();
  const conn = new Connection(sock, {
    id: 'c1',
    dialect: 'test',
    remoteAddress: '10.0.0.1',
    scheduler: new Scheduler(clock),
    maxBufferedBytes: 100,
    ...(frameLimits ? { frameLimits } : {}),
  });
  return { clock, sock, conn };
}

describe('Connection over a Socket', () => {
  it('writes frames through the socket, corked once per tick', async () => {
    const { sock, conn } = make();
    expect(conn.send('a')).toBe(true);
    expect(conn.send('b')).toBe(true);
    expect(sock.sent).toEqual(['a', 'b']);
    expect(sock.corks).toBe(1);
    await new Promise<void>((r) => process.nextTick(r));
    conn.send('c');
    expect(sock.corks).toBe(2);
  });

  it('reads the backlog from the socket and marks a slow consumer', () => {
    const { sock, conn } = make();
    sock.bufferedAmount = 95;
    expect(conn.send('0123456789')).toBe(false);
    expect(conn.slow).toBe(true);
    expect(sock.closed?.code).toBe(1008);
  });

  it('sets the pre-auth frame limit on the socket, then the full one', () => {
    const { sock, conn } = make({ preAuth: 64, max: 1024 });
    expect(sock.frameLimit).toBe(64);
    conn.markAuthenticated();
    expect(sock.frameLimit).toBe(1024);
  });

  it('closes with code and reason, then terminates a close that never completes', () => {
    const { sock, conn, clock } = make();
    conn.close(4000, 'bye');
    expect(sock.closed).toEqual({ code: 4000, reason: 'bye' });
    expect(sock.terminated).toBe(false);
    clock.advance(5_000);
    expect(sock.terminated).toBe(true);
  });

  it('pings through the socket; sendFinal needs an open socket', () => {
    const { sock, conn } = make();
    conn.ping();
    expect(sock.pings).toBe(1);
    sock.terminate();
    conn.sendFinal('late');
    expect(sock.sent).toEqual([]);
  });

  it('tells a Socket from a bare ws WebSocket', () => {
    expect(isSocket(new FakeSocket())).toBe(true);
    expect(isSocket({ send() {}, close() {}, bufferedAmount: 0 })).toBe(false);
    const raw = { readyState: 1, bufferedAmount: 3 } as unknown as ConstructorParameters<typeof WsSocket>[0];
    const ws = new WsSocket(raw);
    expect(ws.raw).toBe(raw);
    expect(ws.open).toBe(true);
    expect(ws.bufferedAmount).toBe(3);
    expect(ws.cork()).toBe(false);
  });
});
