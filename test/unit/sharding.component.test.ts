import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LocalBroker } from '../../src/cluster/broker.js';
import { ManualClock } from '../../src/core/clock.js';
import { Connection } from '../../src/core/connection.js';
import type { ConnectionHandler, DialectContext, HttpRequest } from '../../src/core/dialect.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { ShardingDialect } from '../../src/dialects/sharding/dialect.js';
import { Op } from '../../src/protocols/sharding/messages.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { JsonValue } from '../../src/store/types.js';
import { FakeSocket } from '../support/fake-socket.js';
import { dialectConfig } from '../support/sharding-config.js';

/**
 * The sharding dialect on the core runtime over fake sockets: no network, a manual
 * clock, a store whose writes the test lets through.
 */

class GatedStore extends MemoryStore {
  gated = false;
  readonly gates: Array<() => void> = [];
  override set(ns: string, key: string, value: JsonValue): Promise<void> {
    if (!this.gated) return super.set(ns, key, value);
    return new Promise((resolve, reject) => {
      this.gates.push(() => void super.set(ns, key, value).then(resolve, reject));
    });
  }
}

async function setup() {
  const clock = new ManualClock(1_000_000);
  const scheduler = new Scheduler(clock, (e) => {
    throw e;
  });
  const store = new GatedStore();
  const ctx: DialectContext = { scheduler, store, broker: new LocalBroker(), logger: pino({ level: 'silent' }), registry: new Registry() };
  const dialect = new ShardingDialect(
    dialectConfig({ shardCount: 4 }),
    ctx,
    { secretEquals: (a, b) => a === b },
  );
  await dialect.ready;
  let n = 0;
  const connect = (): { sock: FakeSocket; conn: Connection; h: ConnectionHandler; send: (o: number, d: unknown) => void; ops: () => number[] } => {
    const sock = new FakeSocket();
    const conn = new Connection(sock, { id: `c${++n}`, dialect: 'sharding', remoteAddress: '10.0.0.1', scheduler, maxBufferedBytes: 1 << 20 });
    const h = dialect.accept(conn);
    return { sock, conn, h, send: (o, d) => h.onMessage(Buffer.from(JSON.stringify({ o, d })), false), ops: () => sock.json().map((f) => (f as { o: number }).o) };
  };
  const route = (url: string) => {
    const r = dialect.routes().find((x) => x.url === url);
    if (!r) throw new Error(url);
    return (body: unknown = {}) => r.handler({ params: {}, query: {}, body, ip: '127.0.0.1', headers: {} } satisfies HttpRequest);
  };
  return { clock, scheduler, store, dialect, connect, route };
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
};

describe('sharding dialect on the runtime, over fake sockets', () => {
  it('sends INITIALISE at once and closes 4002 when no IDENTIFY comes within identifyTimeout', async () => {
    const { connect, clock } = await setup();
    const c = connect();
    expect(c.ops()).toEqual([Op.INITIALISE]);
    clock.advance(9_999);
    expect(c.sock.closed).toBeUndefined();
    clock.advance(1);
    expect(c.sock.closed?.code).toBe(4002);
  });

  it('IDENTIFY names the connection for the admin API and answers IDENTIFIED', async () => {
    const { connect, dialect } = await setup();
    const c = connect();
    c.send(Op.IDENTIFY, { name: 'alpha' });
    // IDENTIFIED may follow a write (the CONTROL's record): it goes once that is durable.
    await flush();
    expect(c.ops()).toEqual([Op.INITIALISE, Op.IDENTIFIED]);
    expect(c.conn.identity).toBe('alpha');
    expect(dialect.summary()).toMatchObject({ connections: 1, controls: 1, liveControls: 1 });
  });

  it('an operator halt: SHUTDOWN and the 200 wait until the halt is durable', async () => {
    const { connect, store, route } = await setup();
    const c = connect();
    c.send(Op.IDENTIFY, { name: 'alpha' });
    await flush();
    const before = c.sock.sent.length;
    store.gated = true;
    let answered = false;
    const reply = Promise.resolve(route('/api/v1/sharding/halt')()).then((r) => {
      answered = true;
      return r;
    });
    await flush();
    expect(store.gates.length).toBeGreaterThan(0);
    expect(c.sock.sent.length).toBe(before);
    expect(answered).toBe(false);
    store.gated = false;
    for (const open of store.gates.splice(0)) open();
    expect((await reply).status ?? 200).toBeLessThan(300);
    await flush();
    expect(c.ops().slice(before)).toContain(Op.SHUTDOWN);
  });

  it('stop() leaves no timer behind', async () => {
    const { connect, dialect, scheduler } = await setup();
    const c = connect();
    c.send(Op.IDENTIFY, { name: 'alpha' });
    c.conn._closed(1000, '');
    c.h.onClose(1000, '');
    await dialect.stop();
    expect(dialect.summary()).toMatchObject({ connections: 0, timers: 0 });
    expect(scheduler.size).toBe(0);
  });
});
