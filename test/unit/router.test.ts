import type { WebSocket } from 'ws';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { CLOSE_DRAIN_MS, Connection, truncateReason, type ConnectionObserver } from '../../src/core/connection.js';
import { CloseCode } from '../../src/common/errors.js';
import { Router } from '../../src/core/router.js';
import { Scheduler } from '../../src/core/scheduler.js';

/** Just enough of a ws WebSocket for Connection. There is no `_socket`, so nothing is corked. */
class FakeSocket {
  sent: Array<{ data: Buffer | string; opts: unknown }> = [];
  bufferedAmount = 0;
  readyState = 1;
  closes: Array<{ code: number; reason: string }> = [];
  terminated = 0;
  pings = 0;
  throwOnClose = false;
  send(data: Buffer | string, opts: unknown): void {
    this.sent.push({ data, opts });
  }
  close(code: number, reason: string): void {
    if (this.throwOnClose) throw new Error('invalid close');
    this.closes.push({ code, reason });
    this.readyState = 2;
  }
  terminate(): void {
    this.terminated++;
    this.readyState = 3;
  }
  ping(): void {
    this.pings++;
  }
}

interface Ctx {
  clock: ManualClock;
  sched: Scheduler;
  make: (id: string, opts?: { maxBufferedBytes?: number; observer?: ConnectionObserver }) => { conn: Connection; ws: FakeSocket };
}

function setup(): Ctx {
  const clock = new ManualClock(1_000_000);
  const sched = new Scheduler(clock, (e) => {
    throw e;
  });
  const make: Ctx['make'] = (id, opts = {}) => {
    const ws = new FakeSocket();
    const conn = new Connection(ws as unknown as WebSocket, {
      id,
      dialect: 'test',
      remoteAddress: '127.0.0.1',
      scheduler: sched,
      maxBufferedBytes: opts.maxBufferedBytes ?? 1024,
      ...(opts.observer ? { observer: opts.observer } : {}),
    });
    return { conn, ws };
  };
  return { clock, sched, make };
}

const frame = (s: string): Buffer => Buffer.from(s);

/**
 * A connection whose socket counts what it is given (payload + frame header) into
 * bufferedAmount, as ws does, and how often the connection was called a slow consumer.
 */
function counting(maxBufferedBytes: number): { conn: Connection; ws: FakeSocket; slow: { calls: number } } {
  const { conn, ws } = setup().make('a', { maxBufferedBytes });
  const header = (n: number): number => (n < 126 ? 2 : n < 65_536 ? 4 : 10);
  ws.send = (data: Buffer | string, opts: unknown) => {
    ws.sent.push({ data, opts });
    const n = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    ws.bufferedAmount += n + header(n);
  };
  const slow = { calls: 0 };
  conn.onSlowConsumer = () => slow.calls++;
  return { conn, ws, slow };
}

describe('Router registry', () => {
  it('adds, gets and removes connections by id', () => {
    const { make } = setup();
    const r = new Router();
    const a = make('a').conn;
    const b = make('b').conn;
    r.add(a);
    r.add(b);
    expect(r.size).toBe(2);
    expect(r.get('a')).toBe(a);
    expect(r.has('b')).toBe(true);
    expect(r.get('zzz')).toBeUndefined();
    expect([...r.all()]).toEqual([a, b]);
    r.remove(a);
    expect(r.size).toBe(1);
    expect(r.get('a')).toBeUndefined();
    expect(r.has('a')).toBe(false);
    r.remove(a); // idempotent
    expect(r.size).toBe(1);
  });

  it('supports a custom key', () => {
    const { make } = setup();
    const r = new Router();
    const a = make('a').conn;
    r.add(a, 'alice');
    expect(r.get('alice')).toBe(a);
    expect(r.get('a')).toBeUndefined();
    r.remove(a); // wrong key: stays registered
    expect(r.get('alice')).toBe(a);
    r.remove(a, 'alice');
    expect(r.size).toBe(0);
  });

  it('remove() does not drop a newer connection registered under the same key', () => {
    const { make } = setup();
    const r = new Router();
    const old = make('x').conn;
    const fresh = make('x').conn;
    r.add(old);
    r.add(fresh); // replaces
    expect(r.get('x')).toBe(fresh);
    r.remove(old);
    expect(r.get('x')).toBe(fresh);
  });
});

describe('Router groups', () => {
  it('join/leave track members both ways', () => {
    const { make } = setup();
    const r = new Router();
    const a = make('a').conn;
    const b = make('b').conn;
    r.add(a);
    r.add(b);
    r.join(a, 'g1');
    r.join(a, 'g2');
    r.join(b, 'g1');
    r.join(b, 'g1'); // twice is once
    expect([...r.members('g1')]).toEqual([a, b]);
    expect([...r.members('g2')]).toEqual([a]);
    expect([...r.groupsOf(a)].sort()).toEqual(['g1', 'g2']);
    expect([...r.groupsOf(b)]).toEqual(['g1']);
    expect(r.groupCount).toBe(2);
    r.leave(a, 'g1');
    expect([...r.members('g1')]).toEqual([b]);
    expect([...r.groupsOf(a)]).toEqual(['g2']);
    r.leave(a, 'nope'); // unknown group: no-op
    r.leave(b, 'g2'); // not a member: no-op
    expect([...r.members('g2')]).toEqual([a]);
  });

  it('an empty group disappears', () => {
    const { make } = setup();
    const r = new Router();
    const a = make('a').conn;
    r.join(a, 'solo');
    expect(r.groupCount).toBe(1);
    r.leave(a, 'solo');
    expect(r.groupCount).toBe(0);
    expect([...r.groups()]).toEqual([]);
    expect(r.members('solo').size).toBe(0);
    expect(r.groupsOf(a).size).toBe(0);
  });

  it('remove() leaves every group', () => {
    const { make } = setup();
    const r = new Router();
    const a = make('a').conn;
    const b = make('b').conn;
    r.add(a);
    r.add(b);
    for (const g of ['g1', 'g2', 'g3']) r.join(a, g);
    r.join(b, 'g2');
    r.remove(a);
    expect(r.groupsOf(a).size).toBe(0);
    expect(r.members('g1').size).toBe(0);
    expect(r.members('g3').size).toBe(0);
    expect([...r.members('g2')]).toEqual([b]);
    expect(r.groupCount).toBe(1);
    expect([...r.groups()].map(([g]) => g)).toEqual(['g2']);
  });

  it('members of an unknown group is an empty set', () => {
    const r = new Router();
    expect(r.members('none').size).toBe(0);
  });
});

describe('Router delivery', () => {
  it('sendTo() sends to one connection by key', () => {
    const { make } = setup();
    const r = new Router();
    const { conn, ws } = make('a');
    r.add(conn);
    const f = frame('hi');
    expect(r.sendTo('a', f)).toBe(true);
    expect(r.sendTo('missing', f)).toBe(false);
    expect(ws.sent).toEqual([{ data: f, opts: { binary: false, compress: false } }]);
  });

  it('sendGroup() fans out to members and skips `except`', () => {
    const { make } = setup();
    const r = new Router();
    const peers = ['a', 'b', 'c', 'd'].map((id) => make(id));
    for (const p of peers) r.add(p.conn);
    for (const p of peers.slice(0, 3)) r.join(p.conn, 'room');
    const f = frame('{"t":"msg"}');
    const [pa, pb, pc, pd] = peers as [typeof peers[0], typeof peers[0], typeof peers[0], typeof peers[0]];
    expect(r.sendGroup('room', f, pb.conn)).toBe(2);
    expect(pa.ws.sent.length).toBe(1);
    expect(pb.ws.sent.length).toBe(0);
    expect(pc.ws.sent.length).toBe(1);
    expect(pd.ws.sent.length).toBe(0);
    expect(r.sendGroup('empty', f)).toBe(0);
  });

  it('fanout() works on any iterable of receivers', () => {
    const { make } = setup();
    const r = new Router();
    const a = make('a');
    const b = make('b');
    expect(r.fanout([a.conn, b.conn], frame('x'), a.conn)).toBe(1);
    expect(a.ws.sent.length).toBe(0);
    expect(b.ws.sent.length).toBe(1);
  });

  it('fanout() tells the caller which receivers got the frame, skipping slow ones', () => {
    const { make } = setup();
    const r = new Router();
    const a = make('a');
    const b = make('b');
    const slow = make('slow');
    slow.ws.bufferedAmount = 1 << 30;
    const got: string[] = [];
    expect(r.fanout([a.conn, b.conn, slow.conn], frame('x'), a.conn, (c) => got.push(c.id))).toBe(1);
    expect(got).toEqual([b.conn.id]);
  });

  it('broadcast() counts receivers and hands every one the same Buffer instance', () => {
    const { make } = setup();
    const r = new Router();
    const peers = Array.from({ length: 10 }, (_, i) => make(`c${i}`));
    for (const p of peers) r.add(p.conn);
    const f = frame('{"t":"hello"}');
    expect(r.broadcast(f)).toBe(10);
    for (const p of peers) {
      expect(p.ws.sent.length).toBe(1);
      expect(p.ws.sent[0]?.data).toBe(f);
      expect(p.conn.framesOut).toBe(1);
    }
    const first = peers[0] as (typeof peers)[0];
    expect(r.broadcast(f, first.conn)).toBe(9);
    expect(first.ws.sent.length).toBe(1);
  });

  it('skips a slow receiver, runs its onSlowConsumer exactly once, and still serves the others', () => {
    const { make } = setup();
    const r = new Router();
    const fast1 = make('fast1', { maxBufferedBytes: 100 });
    const slow = make('slow', { maxBufferedBytes: 100 });
    const fast2 = make('fast2', { maxBufferedBytes: 100 });
    for (const p of [fast1, slow, fast2]) r.add(p.conn);
    const calls: Connection[] = [];
    slow.conn.onSlowConsumer = (c) => calls.push(c);
    slow.ws.bufferedAmount = 101;
    const f = frame('0123456789');
    expect(r.broadcast(f)).toBe(2);
    expect(r.broadcast(f)).toBe(2);
    expect(r.broadcast(f)).toBe(2);
    expect(calls).toEqual([slow.conn]);
    expect(slow.conn.slow).toBe(true);
    expect(slow.ws.sent.length).toBe(0);
    expect(fast1.ws.sent.length).toBe(3);
    expect(fast2.ws.sent.length).toBe(3);
    expect(fast1.conn.slow).toBe(false);
  });

  it('counts the frame itself against maxBufferedBytes', () => {
    const { make } = setup();
    const { conn, ws } = make('a', { maxBufferedBytes: 10 });
    let slowCalls = 0;
    conn.onSlowConsumer = () => slowCalls++;
    ws.bufferedAmount = 5;
    expect(conn.send(Buffer.alloc(5))).toBe(true); // 5 + 5 = 10: at the limit
    expect(conn.send('€€')).toBe(false); // 5 + 6 bytes > 10
    expect(slowCalls).toBe(1);
  });

  it('sends one frame larger than maxBufferedBytes without calling the receiver slow; the backlog guard still holds around it', () => {
    const { conn, slow } = counting(1000);
    expect(conn.send(Buffer.alloc(50_000))).toBe(true); // one huge answer, nothing else waiting
    // Small frames behind it count as the backlog, without the big frame's unsent bytes.
    for (let i = 0; i < 9; i++) expect(conn.send(Buffer.alloc(100))).toBe(true);
    expect(slow.calls).toBe(0);
    // A second huge frame while the first is still going out: that is a backlog.
    expect(conn.send(Buffer.alloc(50_000))).toBe(false);
    expect(slow.calls).toBe(1);
  });

  it('lets another big frame go once the first has drained, and still cuts a real backlog after it', () => {
    const { conn, ws, slow } = counting(1000);
    expect(conn.send(Buffer.alloc(20_000))).toBe(true);
    expect(conn.send(Buffer.alloc(500))).toBe(true);
    // The big frame leaves; the 500-byte frame is still queued.
    ws.bufferedAmount -= 20_004;
    expect(conn.send(Buffer.alloc(20_000))).toBe(true);
    ws.bufferedAmount = 0;
    // Small frames that pile up past the limit are still a slow consumer.
    expect(conn.send(Buffer.alloc(600))).toBe(true);
    expect(conn.send(Buffer.alloc(600))).toBe(false);
    expect(slow.calls).toBe(1);
  });

  it('by default closes a slow consumer with POLICY_VIOLATION', () => {
    const { make } = setup();
    const { conn, ws } = make('a', { maxBufferedBytes: 10 });
    ws.bufferedAmount = 11;
    expect(conn.send('x')).toBe(false);
    expect(ws.closes).toEqual([{ code: CloseCode.POLICY_VIOLATION, reason: 'slow consumer' }]);
    expect(conn.closing).toBe(true);
  });

  it('reports frames to the observer', () => {
    const { make } = setup();
    const events: string[] = [];
    const observer: ConnectionObserver = {
      framesOut: (d, n) => events.push(`out:${d}:${n}`),
      framesIn: (d, n) => events.push(`in:${d}:${n}`),
      closed: (d, code) => events.push(`closed:${d}:${code}`),
    };
    const { conn } = make('a', { observer });
    conn.send('x');
    conn.touch();
    conn._closed(1001, 'bye');
    expect(events).toEqual(['out:test:1', 'in:test:1', 'closed:test:1001']);
  });
});

describe('Connection', () => {
  it('records identity and activity from the scheduler clock', () => {
    const { clock, make } = setup();
    const { conn } = make('a');
    expect(conn.id).toBe('a');
    expect(conn.dialect).toBe('test');
    expect(conn.remoteAddress).toBe('127.0.0.1');
    expect(conn.connectedAt).toBe(clock.now());
    expect(conn.lastSeen).toBe(clock.now());
    clock.advance(500);
    conn.touch();
    expect(conn.lastSeen).toBe(clock.now());
    expect(conn.framesIn).toBe(1);
    clock.advance(500);
    conn.touchPong();
    expect(conn.lastSeen).toBe(clock.now());
    expect(conn.framesIn).toBe(1);
  });

  it('exposes bufferedAmount and the socket', () => {
    const { make } = setup();
    const { conn, ws } = make('a');
    ws.bufferedAmount = 77;
    expect(conn.bufferedAmount).toBe(77);
    expect(conn.socket).toBe(ws as unknown as WebSocket);
  });

  it('pings only while open', () => {
    const { make } = setup();
    const { conn, ws } = make('a');
    conn.ping();
    expect(ws.pings).toBe(1);
    conn.close(1000, '');
    conn.ping();
    expect(ws.pings).toBe(1);
  });

  it('close() passes code and reason to the socket', () => {
    const { make } = setup();
    const { conn, ws } = make('a');
    conn.close(4001, 'kicked by operator');
    expect(ws.closes).toEqual([{ code: 4001, reason: 'kicked by operator' }]);
    expect(conn.closing).toBe(true);
    expect(conn.closed).toBe(false);
    conn.close(4002, 'again'); // only once
    expect(ws.closes.length).toBe(1);
  });

  it('close() truncates a long reason to at most 123 bytes', () => {
    const { make } = setup();
    const { conn, ws } = make('a');
    conn.close(1008, 'x'.repeat(500));
    const reason = ws.closes[0]?.reason ?? '';
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
    expect(reason.endsWith('...')).toBe(true);
    expect(reason.startsWith('xxxx')).toBe(true);
  });

  it('send() after close() returns false and writes nothing', () => {
    const { make } = setup();
    const { conn, ws } = make('a');
    expect(conn.send('before')).toBe(true);
    conn.close(1000, 'bye');
    expect(conn.send('after')).toBe(false);
    expect(conn.send(frame('after'))).toBe(false);
    expect(ws.sent.map((s) => s.data)).toEqual(['before']);
    expect(conn.framesOut).toBe(1);
  });

  it('sendFinal() ignores backpressure but not a closed socket', () => {
    const { make } = setup();
    const { conn, ws } = make('a', { maxBufferedBytes: 1 });
    conn.onSlowConsumer = () => {};
    ws.bufferedAmount = 1000;
    conn.sendFinal('goodbye');
    expect(ws.sent.map((s) => s.data)).toEqual(['goodbye']);
    conn._closed(1000, '');
    conn.sendFinal('late');
    expect(ws.sent.length).toBe(1);
  });

  it('terminates a socket whose close never completes after CLOSE_DRAIN_MS', () => {
    const { clock, sched, make } = setup();
    const { conn, ws } = make('a');
    conn.close(1001, 'shutting down');
    expect(sched.size).toBe(1);
    clock.advance(CLOSE_DRAIN_MS - 1);
    expect(ws.terminated).toBe(0);
    clock.advance(1);
    expect(ws.terminated).toBe(1);
    expect(sched.size).toBe(0);
    clock.advance(CLOSE_DRAIN_MS * 10);
    expect(ws.terminated).toBe(1);
  });

  it('does not terminate a socket that closed in time', () => {
    const { clock, sched, make } = setup();
    const { conn, ws } = make('a');
    const heard: Array<[number, string]> = [];
    conn.onClose((code, reason) => heard.push([code, reason]));
    conn.close(1000, '');
    clock.advance(100);
    conn._closed(1000, '');
    expect(conn.closed).toBe(true);
    expect(sched.size).toBe(0);
    clock.advance(CLOSE_DRAIN_MS * 2);
    expect(ws.terminated).toBe(0);
    expect(heard).toEqual([[1000, '']]);
    conn._closed(1006, ''); // only once
    expect(heard.length).toBe(1);
  });

  it('does not terminate or arm a drain timer when closed before close()', () => {
    const { clock, sched, make } = setup();
    const { conn, ws } = make('a');
    conn._closed(1000, '');
    conn.close(1000, 'late');
    expect(ws.closes).toEqual([]);
    expect(sched.size).toBe(0);
    clock.advance(CLOSE_DRAIN_MS * 2);
    expect(ws.terminated).toBe(0);
  });

  it('terminates at once if the socket rejects the close', () => {
    const { sched, make } = setup();
    const { conn, ws } = make('a');
    ws.throwOnClose = true;
    conn.close(1000, 'bye');
    expect(ws.terminated).toBe(1);
    expect(sched.size).toBe(0);
  });

  it('terminate() drops the socket and stops sends', () => {
    const { make } = setup();
    const { conn, ws } = make('a');
    conn.terminate();
    expect(ws.terminated).toBe(1);
    expect(conn.send('x')).toBe(false);
  });
});

describe('truncateReason', () => {
  it('keeps a reason of up to 123 bytes', () => {
    expect(truncateReason('')).toBe('');
    expect(truncateReason('short')).toBe('short');
    const exact = 'a'.repeat(123);
    expect(truncateReason(exact)).toBe(exact);
  });

  it('shortens a longer reason to at most 123 bytes ending in "..."', () => {
    const r = truncateReason('b'.repeat(124));
    expect(r).toBe(`${'b'.repeat(120)}...`);
    expect(Buffer.byteLength(r)).toBe(123);
  });

  it('counts bytes, not characters, for multi-byte text', () => {
    for (const s of ['é'.repeat(100), '€'.repeat(60), '😀'.repeat(40), `a${'😀'.repeat(40)}`]) {
      const r = truncateReason(s);
      expect(Buffer.byteLength(r)).toBeLessThanOrEqual(123);
      expect(r.endsWith('...')).toBe(true);
      expect(s.startsWith(r.slice(0, -3))).toBe(true);
    }
  });

  it('never cuts a character in half (no lone surrogates)', () => {
    const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
    for (let pad = 0; pad < 4; pad++) {
      const r = truncateReason(`${'a'.repeat(pad)}${'😀'.repeat(40)}`);
      expect(lone.test(r)).toBe(false);
      expect(Buffer.byteLength(r)).toBeLessThanOrEqual(123);
      expect(Buffer.byteLength(r)).toBeGreaterThanOrEqual(123 - 3);
    }
  });
});
