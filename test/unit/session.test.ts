import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { Session, SessionManager } from '../../src/core/session.js';

interface State {
  name: string;
}
interface Peer {
  peer: string;
}

function setup(opts: { resumeWindowMs?: number; maxBufferedBytes?: number } = {}): {
  clock: ManualClock;
  sched: Scheduler;
  mgr: SessionManager<State, Peer>;
  expired: Array<Session<State, Peer>>;
} {
  const clock = new ManualClock(50_000);
  const sched = new Scheduler(clock, (e) => {
    throw e;
  });
  const expired: Array<Session<State, Peer>> = [];
  let n = 0;
  const mgr = new SessionManager<State, Peer>({
    scheduler: sched,
    resumeWindowMs: opts.resumeWindowMs ?? 1000,
    ...(opts.maxBufferedBytes !== undefined ? { maxBufferedBytes: opts.maxBufferedBytes } : {}),
    onExpire: (s) => expired.push(s),
    newId: () => `id-${++n}`,
  });
  return { clock, sched, mgr, expired };
}

describe('SessionManager', () => {
  it('creates an attached session findable by key and id', () => {
    const { mgr } = setup();
    const to = { peer: 'p1' };
    const s = mgr.create('alice', { name: 'Alice' }, to);
    expect(s.key).toBe('alice');
    expect(s.id).toBe('id-1');
    expect(s.state).toEqual({ name: 'Alice' });
    expect(s.attached).toBe(to);
    expect(s.detachedAt).toBeUndefined();
    expect(s.seq).toBe(0);
    expect(s.acked).toBe(0);
    expect(s.overflowed).toBe(false);
    expect(mgr.size).toBe(1);
    expect(mgr.get('alice')).toBe(s);
    expect(mgr.byId('id-1')).toBe(s);
    expect(mgr.get('bob')).toBeUndefined();
    expect(mgr.byId('id-2')).toBeUndefined();
    expect([...mgr.values()]).toEqual([s]);
  });

  it('uses defaults for buffer size and makes unique ids without newId', () => {
    const clock = new ManualClock(0);
    const mgr = new SessionManager<State>({ scheduler: new Scheduler(clock), resumeWindowMs: 10 });
    expect(mgr.maxBufferedBytes).toBe(1 << 20);
    expect(mgr.resumeWindowMs).toBe(10);
    const ids = new Set<string>();
    for (let i = 0; i < 100; i++) ids.add(mgr.create(`k${i}`, { name: '' }, undefined).id);
    expect(ids.size).toBe(100);
    for (const id of ids) expect(mgr.byId(id)?.id).toBe(id);
  });

  it('detach() starts the resume window', () => {
    const { clock, sched, mgr, expired } = setup({ resumeWindowMs: 1000 });
    const s = mgr.create('alice', { name: 'Alice' }, { peer: 'p1' });
    mgr.detach(s);
    expect(s.attached).toBeUndefined();
    expect(s.detachedAt).toBe(clock.now());
    expect(sched.size).toBe(1);
    clock.advance(999);
    expect(expired).toEqual([]);
    expect(mgr.get('alice')).toBe(s);
  });

  it('resume() within the window cancels the expiry and attaches', () => {
    const { clock, sched, mgr, expired } = setup({ resumeWindowMs: 1000 });
    const s = mgr.create('alice', { name: 'Alice' }, { peer: 'p1' });
    mgr.detach(s);
    clock.advance(500);
    const to = { peer: 'p2' };
    mgr.resume(s, to);
    expect(s.attached).toBe(to);
    expect(s.detachedAt).toBeUndefined();
    expect(sched.size).toBe(0);
    clock.advance(10_000);
    expect(expired).toEqual([]);
    expect(mgr.get('alice')).toBe(s);
    expect(mgr.byId(s.id)).toBe(s);
  });

  it('a second detach after resume starts a fresh window', () => {
    const { clock, mgr, expired } = setup({ resumeWindowMs: 1000 });
    const s = mgr.create('alice', { name: 'Alice' }, { peer: 'p1' });
    mgr.detach(s);
    clock.advance(900);
    mgr.resume(s, { peer: 'p2' });
    clock.advance(50);
    mgr.detach(s);
    clock.advance(999);
    expect(expired).toEqual([]);
    clock.advance(1);
    expect(expired).toEqual([s]);
  });

  it('detaching twice restarts the window and keeps only one timer', () => {
    const { clock, sched, mgr, expired } = setup({ resumeWindowMs: 1000 });
    const s = mgr.create('alice', { name: 'Alice' }, { peer: 'p1' });
    mgr.detach(s);
    clock.advance(600);
    mgr.detach(s);
    expect(sched.size).toBe(1);
    clock.advance(600);
    expect(expired).toEqual([]);
    clock.advance(400);
    expect(expired).toEqual([s]);
  });

  it('expires after the window: onExpire once, removed by key and id', () => {
    const { clock, sched, mgr, expired } = setup({ resumeWindowMs: 1000 });
    const s = mgr.create('alice', { name: 'Alice' }, { peer: 'p1' });
    const other = mgr.create('bob', { name: 'Bob' }, { peer: 'p9' });
    mgr.detach(s);
    clock.advance(1000);
    expect(expired).toEqual([s]);
    expect(mgr.get('alice')).toBeUndefined();
    expect(mgr.byId(s.id)).toBeUndefined();
    expect(mgr.size).toBe(1);
    expect(mgr.get('bob')).toBe(other);
    expect(sched.size).toBe(0);
    clock.advance(100_000);
    expect(expired).toEqual([s]);
    // Detaching an expired session does nothing.
    mgr.detach(s);
    expect(sched.size).toBe(0);
    clock.advance(100_000);
    expect(expired).toEqual([s]);
  });

  it('honours a changed resumeWindowMs for later detaches', () => {
    const { clock, mgr, expired } = setup({ resumeWindowMs: 1000 });
    mgr.resumeWindowMs = 100;
    const s = mgr.create('alice', { name: 'Alice' }, { peer: 'p1' });
    mgr.detach(s);
    clock.advance(100);
    expect(expired).toEqual([s]);
  });

  it('create() with an existing key ends the old session without onExpire', () => {
    const { clock, sched, mgr, expired } = setup({ resumeWindowMs: 1000 });
    const old = mgr.create('alice', { name: 'old' }, { peer: 'p1' });
    mgr.detach(old);
    const fresh = mgr.create('alice', { name: 'new' }, { peer: 'p2' });
    expect(fresh).not.toBe(old);
    expect(fresh.id).not.toBe(old.id);
    expect(mgr.size).toBe(1);
    expect(mgr.get('alice')).toBe(fresh);
    expect(mgr.byId(old.id)).toBeUndefined();
    expect(mgr.byId(fresh.id)).toBe(fresh);
    expect(sched.size).toBe(0);
    clock.advance(10_000);
    expect(expired).toEqual([]);
    // The stale session cannot affect the new one.
    mgr.detach(old);
    mgr.end(old);
    expect(mgr.get('alice')).toBe(fresh);
    expect(fresh.attached).toEqual({ peer: 'p2' });
    expect(sched.size).toBe(0);
  });

  it('create() replacing an attached session also ends it silently', () => {
    const { clock, mgr, expired } = setup();
    const old = mgr.create('alice', { name: 'old' }, { peer: 'p1' });
    const fresh = mgr.create('alice', { name: 'new' }, { peer: 'p2' });
    expect(mgr.get('alice')).toBe(fresh);
    expect(mgr.byId(old.id)).toBeUndefined();
    clock.advance(10_000);
    expect(expired).toEqual([]);
  });

  it('end() removes a session silently, cancelling its window', () => {
    const { clock, sched, mgr, expired } = setup();
    const s = mgr.create('alice', { name: 'Alice' }, { peer: 'p1' });
    mgr.detach(s);
    mgr.end(s);
    expect(mgr.get('alice')).toBeUndefined();
    expect(mgr.byId(s.id)).toBeUndefined();
    expect(mgr.size).toBe(0);
    expect(sched.size).toBe(0);
    clock.advance(10_000);
    expect(expired).toEqual([]);
    mgr.end(s); // idempotent
    expect(mgr.size).toBe(0);
  });

  it('end() on an attached session is silent too', () => {
    const { clock, mgr, expired } = setup();
    const s = mgr.create('alice', { name: 'Alice' }, { peer: 'p1' });
    mgr.end(s);
    expect(mgr.size).toBe(0);
    clock.advance(10_000);
    expect(expired).toEqual([]);
  });

  it('clear() removes every session and timer without onExpire', () => {
    const { clock, sched, mgr, expired } = setup();
    const a = mgr.create('a', { name: 'a' }, { peer: '1' });
    mgr.create('b', { name: 'b' }, { peer: '2' });
    const c = mgr.create('c', { name: 'c' }, { peer: '3' });
    mgr.detach(a);
    mgr.detach(c);
    mgr.clear();
    expect(mgr.size).toBe(0);
    expect([...mgr.values()]).toEqual([]);
    expect(sched.size).toBe(0);
    clock.advance(10_000);
    expect(expired).toEqual([]);
  });

  it('expires many sessions in detach order', () => {
    const { clock, mgr, expired } = setup({ resumeWindowMs: 100 });
    const all: Array<Session<State, Peer>> = [];
    for (let i = 0; i < 20; i++) all.push(mgr.create(`k${i}`, { name: `${i}` }, { peer: `${i}` }));
    for (const s of all) {
      mgr.detach(s);
      clock.advance(1);
    }
    mgr.resume(all[5] as Session<State, Peer>, { peer: 'back' });
    clock.advance(1000);
    expect(expired).toEqual(all.filter((_, i) => i !== 5));
    expect(mgr.size).toBe(1);
    expect(mgr.get('k5')).toBe(all[5]);
  });
});

describe('Session outbound buffer', () => {
  it('numbers frames from 1 and counts bytes (UTF-8 for strings)', () => {
    const s = new Session<null>('k', 'id', null);
    expect(s.push('abc', 1000)).toBe(1);
    expect(s.push(Buffer.from([1, 2, 3, 4]), 1000)).toBe(2);
    expect(s.push('é€', 1000)).toBe(3); // 2 + 3 bytes
    expect(s.seq).toBe(3);
    expect(s.bufferedFrames).toBe(3);
    expect(s.bufferedBytes).toBe(3 + 4 + 5);
  });

  it('since() returns frames after a sequence, in order', () => {
    const s = new Session<null>('k', 'id', null);
    for (let i = 1; i <= 5; i++) s.push(`f${i}`, 1000);
    expect(s.since(0).map((f) => f.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(s.since(3)).toEqual([
      { seq: 4, frame: 'f4' },
      { seq: 5, frame: 'f5' },
    ]);
    expect(s.since(5)).toEqual([]);
    expect(s.since(99)).toEqual([]);
  });

  it('ack() drops frames up to and including seq and releases their bytes', () => {
    const s = new Session<null>('k', 'id', null);
    const buf = Buffer.from('xxxxxx');
    s.push('aa', 1000); // 1: 2 bytes
    s.push(buf, 1000); // 2: 6 bytes
    s.push('ccc', 1000); // 3: 3 bytes
    s.push('dddd', 1000); // 4: 4 bytes
    expect(s.bufferedBytes).toBe(15);
    s.ack(2);
    expect(s.acked).toBe(2);
    expect(s.bufferedFrames).toBe(2);
    expect(s.bufferedBytes).toBe(7);
    expect(s.since(0).map((f) => f.seq)).toEqual([3, 4]);
    // Old or repeated acks change nothing.
    s.ack(1);
    s.ack(2);
    expect(s.acked).toBe(2);
    expect(s.bufferedBytes).toBe(7);
    // An ack past the last frame is clamped.
    s.ack(100);
    expect(s.acked).toBe(4);
    expect(s.bufferedFrames).toBe(0);
    expect(s.bufferedBytes).toBe(0);
    // Numbering continues.
    expect(s.push('e', 1000)).toBe(5);
    expect(s.since(4)).toEqual([{ seq: 5, frame: 'e' }]);
    expect(s.bufferedBytes).toBe(1);
  });

  it('keeps the same Buffer instance it was given', () => {
    const s = new Session<null>('k', 'id', null);
    const b = Buffer.from('hello');
    s.push(b, 1000);
    expect(s.since(0)[0]?.frame).toBe(b);
  });

  it('sets overflowed when maxBytes would be exceeded, and does not buffer that frame', () => {
    const s = new Session<null>('k', 'id', null);
    expect(s.push('12345', 10)).toBe(1);
    expect(s.push('67890', 10)).toBe(2); // exactly at the limit
    expect(s.overflowed).toBe(false);
    expect(s.bufferedBytes).toBe(10);
    expect(s.push('x', 10)).toBe(3);
    expect(s.overflowed).toBe(true);
    expect(s.seq).toBe(3);
    expect(s.bufferedFrames).toBe(2);
    expect(s.bufferedBytes).toBe(10);
    expect(s.since(0).map((f) => f.seq)).toEqual([1, 2]);
    // Acknowledging does not clear the flag: the loss already happened.
    s.ack(3);
    expect(s.bufferedBytes).toBe(0);
    expect(s.overflowed).toBe(true);
  });

  it('overflows on a single frame larger than maxBytes', () => {
    const s = new Session<null>('k', 'id', null);
    s.push(Buffer.alloc(11), 10);
    expect(s.overflowed).toBe(true);
    expect(s.bufferedFrames).toBe(0);
    expect(s.bufferedBytes).toBe(0);
  });

  it('works with the manager maxBufferedBytes', () => {
    const { mgr } = setup({ maxBufferedBytes: 8 });
    expect(mgr.maxBufferedBytes).toBe(8);
    const s = mgr.create('a', { name: 'a' }, { peer: '1' });
    s.push('1234', mgr.maxBufferedBytes);
    s.push('5678', mgr.maxBufferedBytes);
    expect(s.overflowed).toBe(false);
    s.push('9', mgr.maxBufferedBytes);
    expect(s.overflowed).toBe(true);
  });
});
