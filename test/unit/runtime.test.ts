import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { LocalBroker } from '../../src/cluster/broker.js';
import { ManualClock } from '../../src/core/clock.js';
import { DialectRuntime, type CoreEffect, type World } from '../../src/core/runtime.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { JsonValue, Store } from '../../src/store/types.js';

/**
 * The generic runtime fed a tiny world: frames, deadlines with typed keys, writes that
 * hold the frames behind them, per-peer log limits, Broker deliveries and admin replies.
 */

type Key = { readonly kind: 'ping'; readonly conn: string } | { readonly kind: 'ttl'; readonly item: number };
type Ev =
  | { readonly type: 'frame'; readonly conn: string; readonly text: string }
  | { readonly type: 'timer'; readonly key: Key; readonly now: number }
  | { readonly type: 'admin'; readonly what: string }
  | { readonly type: 'settled'; readonly id: string; readonly ok: boolean };
type Own = { readonly type: 'counted'; readonly n: number };
type Fx = CoreEffect<Key> | Own;
interface St {
  readonly log: readonly string[];
}

/** The test's world: each frame's text names the effects it returns. */
function world(counted: number[]): World<St, Ev, Key, Own> {
  return {
    step(state, ev) {
      const log = [...state.log, ev.type === 'timer' ? `timer:${ev.key.kind}` : ev.type];
      const fx: Fx[] = [];
      if (ev.type === 'frame') {
        for (const word of ev.text.split(' ')) {
          if (word === 'echo') fx.push({ type: 'send', conn: ev.conn, frame: `echo:${ev.conn}` });
          if (word === 'save') fx.push({ type: 'persist', key: 'k', value: ev.conn });
          if (word === 'told') fx.push({ type: 'persist', namespace: 'other', key: 'k', value: ev.conn, settled: 't' });
          if (word === 'forget') fx.push({ type: 'unpersist', namespace: 'other', key: 'k', settled: 'f' });
          if (word === 'bye') fx.push({ type: 'close', conn: ev.conn, code: 4000, reason: 'bye' });
          if (word === 'arm') fx.push({ type: 'timer', key: { kind: 'ping', conn: ev.conn }, at: 1_000 + 1_700_000_000_000 });
          if (word === 'disarm') fx.push({ type: 'timer', key: { kind: 'ping', conn: ev.conn }, at: null });
          if (word === 'noise') fx.push({ type: 'log', level: 'warn', msg: 'noise', peer: ev.conn });
          if (word === 'count') fx.push({ type: 'counted', n: 1 });
          if (word === 'all') fx.push({ type: 'deliver', target: { to: 'all', except: ev.conn }, frame: 'to-all' });
          if (word === 'group') fx.push({ type: 'deliver', target: { to: 'group', group: 'g' }, frame: 'to-group' });
          if (word.startsWith('answer:')) fx.push({ type: 'reply', call: word.slice('answer:'.length), status: 200, body: { from: ev.conn } });
          if (word === 'join') fx.push({ type: 'join', conn: ev.conn, group: 'g' });
          if (word === 'leave') fx.push({ type: 'leave', conn: ev.conn, group: 'g' });
          if (word === 'enlist') fx.push({ type: 'enlist', conn: ev.conn, on: true });
          if (word === 'delist') fx.push({ type: 'enlist', conn: ev.conn, on: false });
          if (word === 'reply') fx.push({ type: 'deliver', target: { to: 'requester', requester: { instance: 'local', conn: 'b' } }, frame: 'answer' });
        }
        // Saves come last in the list: the runtime still issues them first.
        fx.sort((a, b) => (a.type === 'persist' ? 1 : 0) - (b.type === 'persist' ? 1 : 0));
      }
      if (ev.type === 'settled') fx.push({ type: 'send', conn: 'a', frame: `settled:${ev.id}:${ev.ok}` });
      if (ev.type === 'admin') {
        fx.push({ type: 'persist', key: 'admin', value: ev.what });
        fx.push({ type: 'reply', status: 200, body: { ok: ev.what } });
      }
      return { state: { log }, effects: fx };
    },
    timerEvent: (key, now) => ({ type: 'timer', key, now }),
    timerId: (key) => (key.kind === 'ping' ? `ping:${key.conn}` : `ttl:${key.item}`),
    effect(e) {
      counted.push(e.n);
    },
    settledEvent: (id, ok) => ({ type: 'settled', id, ok }),
  };
}

class FakeConn {
  sent: string[] = [];
  closed: { code: number; reason: string } | undefined;
  constructor(readonly id: string) {}
  send(frame: string): boolean {
    this.sent.push(frame);
    return true;
  }
  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
  }
}

/** A store whose writes wait until the test lets them through (or fails them). */
class GatedStore extends MemoryStore {
  readonly gates: Array<{ open: () => void; fail: () => void }> = [];
  override set(ns: string, key: string, value: JsonValue): Promise<void> {
    return new Promise((resolve, reject) => {
      this.gates.push({ open: () => void super.set(ns, key, value).then(resolve, reject), fail: () => reject(new Error('disk full')) });
    });
  }
}

function setup(store: Store = new MemoryStore()) {
  const clock = new ManualClock();
  const scheduler = new Scheduler(clock);
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s) as Record<string, unknown>) });
  const counted: number[] = [];
  const broker = new LocalBroker();
  const rt = new DialectRuntime<St, Ev, Key, Own>({
    name: 'test',
    world: world(counted),
    initial: { log: [] },
    scheduler,
    logger,
    store: { store, namespace: 'test' },
    broker: { broker, scope: 'test' },
    peerLogRate: { perSecond: 1, burst: 2 },
  });
  const a = new FakeConn('a');
  const b = new FakeConn('b');
  rt.attach(a);
  rt.attach(b);
  return { clock, rt, a, b, lines, counted, broker, store };
}

const frame = (conn: string, text: string): Ev => ({ type: 'frame', conn, text });
const flush = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
};

describe('DialectRuntime', () => {
  it('sends and closes on the connection the world names', () => {
    const { rt, a, b } = setup();
    rt.feed(frame('a', 'echo bye'));
    expect(a.sent).toEqual(['echo:a']);
    expect(a.closed).toEqual({ code: 4000, reason: 'bye' });
    expect(b.sent).toEqual([]);
    expect(rt.state.log).toEqual(['frame']);
  });

  it('holds frames behind a write until it is durable, in order', async () => {
    const store = new GatedStore();
    const { rt, a } = setup(store);
    rt.feed(frame('a', 'echo save'));
    rt.feed(frame('a', 'echo'));
    expect(a.sent).toEqual([]);
    expect(store.gates).toHaveLength(1);
    await flush();
    expect(a.sent).toEqual([]);
    store.gates[0]?.open();
    await rt.settled();
    expect(a.sent).toEqual(['echo:a', 'echo:a']);
    expect(await store.get('test', 'k')).toBe('a');
    // Nothing unsettled: frames go at once again.
    rt.feed(frame('a', 'echo'));
    expect(a.sent).toHaveLength(3);
  });

  it('sends what waited on a failed write anyway, and logs the failure', async () => {
    const store = new GatedStore();
    const { rt, a, lines } = setup(store);
    rt.feed(frame('a', 'echo save'));
    store.gates[0]?.fail();
    await rt.settled();
    expect(a.sent).toEqual(['echo:a']);
    expect(lines.some((l) => l.msg === 'test: could not persist')).toBe(true);
  });

  it('tells the world when a write with `settled` has settled, holding no frame behind it; writes and deletes in another namespace', async () => {
    const store = new GatedStore();
    const { rt, a } = setup(store);
    rt.feed(frame('a', 'told echo'));
    rt.feed(frame('a', 'echo'));
    // Nothing waits on it: the world sends what depends on the write itself.
    expect(a.sent).toEqual(['echo:a', 'echo:a']);
    store.gates[0]?.open();
    await rt.settled();
    expect(a.sent).toEqual(['echo:a', 'echo:a', 'settled:t:true']);
    expect(await store.get('other', 'k')).toBe('a');
    expect(await store.get('test', 'k')).toBeUndefined();
    rt.feed(frame('a', 'forget'));
    await rt.settled();
    expect(a.sent.at(-1)).toBe('settled:f:true');
    expect(await store.get('other', 'k')).toBeUndefined();
    rt.feed(frame('a', 'told'));
    store.gates[1]?.fail();
    await rt.settled();
    expect(a.sent.at(-1)).toBe('settled:t:false');
  });

  it('fires typed timers, replaces a key set twice, and cancels', () => {
    const { rt, clock } = setup();
    rt.feed(frame('a', 'arm'));
    rt.feed(frame('a', 'arm'));
    rt.feed(frame('b', 'arm'));
    expect(rt.timerCount).toBe(2);
    rt.feed(frame('b', 'disarm'));
    expect(rt.timerCount).toBe(1);
    clock.advance(999);
    expect(rt.state.log.filter((l) => l.startsWith('timer'))).toEqual([]);
    clock.advance(1);
    expect(rt.state.log.filter((l) => l.startsWith('timer'))).toEqual(['timer:ping']);
    expect(rt.timerCount).toBe(0);
  });

  it('stop() cancels timers and ignores later ones', async () => {
    const { rt, clock } = setup();
    rt.feed(frame('a', 'arm'));
    await rt.stop();
    rt.feed(frame('b', 'arm'));
    clock.advance(5_000);
    expect(rt.timerCount).toBe(0);
    expect(rt.state.log).not.toContain('timer:ping');
    expect((await rt.admin({ type: 'admin', what: 'x' })).status).toBe(503);
  });

  it('limits log lines per peer and reports how many were held back', () => {
    const { rt, clock, lines } = setup();
    for (let i = 0; i < 5; i++) rt.feed(frame('a', 'noise'));
    rt.feed(frame('b', 'noise'));
    expect(lines.filter((l) => l.msg === 'noise')).toHaveLength(3);
    clock.advance(1_000);
    rt.feed(frame('a', 'noise'));
    const last = lines.filter((l) => l.msg === 'noise').at(-1);
    expect(last?.suppressed).toBe(3);
  });

  it("hands the dialect's own effects to its handler", () => {
    const { rt, counted } = setup();
    rt.feed(frame('a', 'count count'));
    expect(counted).toEqual([1, 1]);
  });

  it('delivers to all, to a group and to a requester through the Broker', () => {
    const { rt, a, b, broker } = setup();
    const c = new FakeConn('c');
    rt.attach(c);
    rt.feed(frame('a', 'all'));
    expect([a.sent, b.sent, c.sent]).toEqual([[], ['to-all'], ['to-all']]);
    broker.join('test', 'g', 'a');
    broker.join('test', 'g', 'c');
    rt.feed(frame('b', 'group'));
    expect(a.sent).toEqual(['to-group']);
    expect(c.sent).toEqual(['to-all', 'to-group']);
    rt.feed(frame('a', 'reply'));
    expect(b.sent).toEqual(['to-all', 'answer']);
    // A detached connection leaves its groups and receives nothing.
    rt.detach('c');
    rt.feed(frame('b', 'group all'));
    expect(c.sent).toEqual(['to-all', 'to-group']);
    expect(broker.attached('test')).toBe(2);
  });

  it('joins and leaves Broker groups, and enlists a connection attached off the Broker only when told', () => {
    const { rt, a, broker } = setup();
    const c = new FakeConn('c');
    rt.attach(c, false);
    // Attached off the Broker: the world may send to it, but no delivery reaches it.
    rt.feed(frame('c', 'echo join'));
    rt.feed(frame('a', 'all'));
    expect(c.sent).toEqual(['echo:c']);
    expect(broker.attached('test')).toBe(2);
    rt.feed(frame('c', 'enlist join'));
    rt.feed(frame('a', 'join'));
    rt.feed(frame('b', 'all group'));
    expect(c.sent).toEqual(['echo:c', 'to-all', 'to-group']);
    expect(a.sent).toEqual(['to-all', 'to-group']);
    rt.feed(frame('a', 'leave'));
    rt.feed(frame('b', 'group'));
    expect(a.sent).toEqual(['to-all', 'to-group']);
    expect(c.sent).toEqual(['echo:c', 'to-all', 'to-group', 'to-group']);
    // Delisted: off the Broker and out of its groups, still attached for its own frames.
    rt.feed(frame('c', 'delist'));
    rt.feed(frame('b', 'all group'));
    rt.feed(frame('c', 'echo'));
    expect(c.sent).toEqual(['echo:c', 'to-all', 'to-group', 'to-group', 'echo:c']);
    expect(broker.attached('test')).toBe(2);
    expect(rt.connection('c')).toBe(c);
  });

  it('passes frames given as bytes to the connection and the Broker unchanged', () => {
    const clock = new ManualClock();
    const sent: Array<string | Buffer> = [];
    const broker = new LocalBroker();
    const bytes = Buffer.from('{"op":0}');
    const rt = new DialectRuntime<null, string, string, never, string | Buffer>({
      name: 'bytes',
      world: {
        step: (state, ev) => ({
          state,
          effects: [
            { type: 'send', conn: ev, frame: bytes },
            { type: 'deliver', target: { to: 'conn', conn: ev }, frame: bytes },
          ],
        }),
        timerEvent: (key) => key,
        timerId: (key) => key,
      },
      initial: null,
      scheduler: new Scheduler(clock),
      logger: pino({ level: 'silent' }),
      broker: { broker, scope: 'bytes' },
    });
    rt.attach({ id: 'x', send: (f) => sent.push(f) > 0, close: () => undefined });
    rt.feed('x');
    expect(sent).toEqual([bytes, bytes]);
    expect(sent[0]).toBe(bytes);
    expect(sent[1]).toBe(bytes);
  });

  it('answers an admin call once its writes are durable, 500 when one failed', async () => {
    const store = new GatedStore();
    const { rt } = setup(store);
    let answered = false;
    const p = rt.admin({ type: 'admin', what: 'halt' }).then((r) => {
      answered = true;
      return r;
    });
    await flush();
    expect(answered).toBe(false);
    store.gates[0]?.open();
    expect(await p).toEqual({ status: 200, body: { ok: 'halt' } });
    const q = rt.admin({ type: 'admin', what: 'resume' });
    store.gates[1]?.fail();
    expect((await q).status).toBe(500);
  });

  it('answers a call when a later step replies to it, after the writes before; 503 for a call open at stop()', async () => {
    const store = new GatedStore();
    const { rt } = setup(store);
    let answered = false;
    const p = rt.call('q1', frame('a', 'echo')).then((r) => {
      answered = true;
      return r;
    });
    expect(rt.openCalls).toBe(1);
    rt.feed(frame('b', 'save answer:q1 answer:nobody'));
    await flush();
    expect(answered).toBe(false);
    store.gates[0]?.open();
    expect(await p).toEqual({ status: 200, body: { from: 'b' } });
    expect(rt.openCalls).toBe(0);
    // A reply naming a call is not an admin call's answer.
    expect(await rt.admin(frame('a', 'answer:x'))).toMatchObject({ status: 500 });
    const q = rt.call('q2', frame('a', ''));
    await rt.stop();
    expect(await q).toMatchObject({ status: 503, body: { error: 'SHUTTING_DOWN' } });
    expect(rt.openCalls).toBe(0);
  });

  it('holds events until start(), then feeds them in order', () => {
    const clock = new ManualClock();
    const rt = new DialectRuntime<St, Ev, Key, Own>({
      name: 'held',
      world: world([]),
      initial: { log: [] },
      scheduler: new Scheduler(clock),
      logger: pino({ level: 'silent' }),
      store: { store: new MemoryStore(), namespace: 'held' },
      held: true,
    });
    rt.enqueue(() => frame('a', ''));
    rt.enqueue(() => ({ type: 'admin', what: 'x' }) as Ev);
    expect(rt.state.log).toEqual([]);
    rt.start({ type: 'timer', key: { kind: 'ttl', item: 1 }, now: clock.now() });
    expect(rt.state.log).toEqual(['timer:ttl', 'frame', 'admin']);
  });
});
