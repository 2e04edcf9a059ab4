import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { MusterError, isMusterError } from '../../src/core/errors.js';
import { PendingRequests, type PendingEntry } from '../../src/core/pending.js';
import { Scheduler } from '../../src/core/scheduler.js';

function setup(): { clock: ManualClock; sched: Scheduler; errors: unknown[] } {
  const clock = new ManualClock(10_000);
  const errors: unknown[] = [];
  const sched = new Scheduler(clock, (e) => errors.push(e));
  return { clock, sched, errors };
}

describe('PendingRequests', () => {
  it('adds an entry with key, data and start time', () => {
    const { clock, sched } = setup();
    const p = new PendingRequests<{ n: number }>(sched, () => {});
    const e = p.add('a', 100, { n: 1 });
    expect(e).toMatchObject({ key: 'a', data: { n: 1 }, startedAt: clock.now() });
    expect(p.size).toBe(1);
    expect(p.has('a')).toBe(true);
    expect(p.has('b')).toBe(false);
    expect(p.get('a')).toBe(e);
    expect(p.get('b')).toBeUndefined();
    expect([...p.values()]).toEqual([e]);
    expect(sched.size).toBe(1);
  });

  it('expires an entry at its deadline and calls onExpire exactly once', () => {
    const { clock, sched, errors } = setup();
    const expired: Array<PendingEntry<string>> = [];
    const p = new PendingRequests<string>(sched, (e) => expired.push(e));
    const start = clock.now();
    p.add('a', 100, 'A');
    p.add('b', 200, 'B');
    clock.advance(99);
    expect(expired).toEqual([]);
    expect(p.has('a')).toBe(true);
    clock.advance(1);
    expect(expired.map((e) => e.key)).toEqual(['a']);
    expect(expired[0]).toMatchObject({ key: 'a', data: 'A', startedAt: start });
    expect(p.has('a')).toBe(false);
    expect(p.size).toBe(1);
    clock.advance(10_000);
    expect(expired.map((e) => e.key)).toEqual(['a', 'b']);
    expect(p.size).toBe(0);
    expect(sched.size).toBe(0);
    expect(clock.pending).toBe(0);
    expect(errors).toEqual([]);
  });

  it('sees the entry already removed when onExpire runs', () => {
    const { clock, sched } = setup();
    let seen: boolean | undefined;
    const p: PendingRequests<number> = new PendingRequests<number>(sched, (e) => {
      seen = p.has(e.key);
    });
    p.add('a', 10, 1);
    clock.advance(10);
    expect(seen).toBe(false);
  });

  it('lets onExpire re-add the same key', () => {
    const { clock, sched } = setup();
    let count = 0;
    const p: PendingRequests<number> = new PendingRequests<number>(sched, (e) => {
      count++;
      if (e.data < 3) p.add(e.key, 10, e.data + 1);
    });
    p.add('retry', 10, 1);
    clock.advance(100);
    expect(count).toBe(3);
    expect(p.size).toBe(0);
    expect(sched.size).toBe(0);
  });

  it('take() removes the entry and cancels its deadline', () => {
    const { clock, sched } = setup();
    let expired = 0;
    const p = new PendingRequests<string>(sched, () => expired++);
    const added = p.add('a', 100, 'A');
    const taken = p.take('a');
    expect(taken).toBe(added);
    expect(p.size).toBe(0);
    expect(sched.size).toBe(0);
    expect(p.take('a')).toBeUndefined();
    expect(p.take('never')).toBeUndefined();
    clock.advance(1000);
    expect(expired).toBe(0);
  });

  it('does not let an old deadline expire a re-added key', () => {
    const { clock, sched } = setup();
    const expired: string[] = [];
    const p = new PendingRequests<string>(sched, (e) => expired.push(e.data));
    p.add('k', 100, 'first');
    clock.advance(50);
    p.take('k');
    p.add('k', 100, 'second');
    clock.advance(60); // past the first deadline
    expect(expired).toEqual([]);
    expect(p.get('k')?.data).toBe('second');
    clock.advance(40);
    expect(expired).toEqual(['second']);
  });

  it('throws DUPLICATE_REQUEST for a key that is already pending', () => {
    const { sched } = setup();
    const p = new PendingRequests<number>(sched, () => {});
    p.add('dup', 100, 1);
    let caught: unknown;
    try {
      p.add('dup', 100, 2);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(MusterError);
    expect(isMusterError(caught, 'DUPLICATE_REQUEST')).toBe(true);
    const err = caught as MusterError;
    expect(err.name).toBe('DUPLICATE_REQUEST');
    expect(err.code).toBe('MUSTER_DUPLICATE_REQUEST');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('dup');
    // The original entry is untouched and no extra timer was made.
    expect(p.get('dup')?.data).toBe(1);
    expect(sched.size).toBe(1);
  });

  it('takeWhere() removes and returns only matching entries, cancelling their deadlines', () => {
    const { clock, sched } = setup();
    const expired: string[] = [];
    const p = new PendingRequests<{ owner: string }>(sched, (e) => expired.push(e.key));
    p.add('1', 100, { owner: 'x' });
    p.add('2', 100, { owner: 'y' });
    p.add('3', 100, { owner: 'x' });
    p.add('4', 100, { owner: 'z' });
    const taken = p.takeWhere((e) => e.data.owner === 'x');
    expect(taken.map((e) => e.key)).toEqual(['1', '3']);
    expect(p.size).toBe(2);
    expect(sched.size).toBe(2);
    expect(p.takeWhere(() => false)).toEqual([]);
    clock.advance(100);
    expect(expired).toEqual(['2', '4']);
    expect(p.size).toBe(0);
    expect(sched.size).toBe(0);
  });

  it('clear() removes everything without calling onExpire', () => {
    const { clock, sched } = setup();
    let expired = 0;
    const p = new PendingRequests<number>(sched, () => expired++);
    for (let i = 0; i < 10; i++) p.add(`k${i}`, 10 + i, i);
    const all = p.clear();
    expect(all.map((e) => e.data)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(p.size).toBe(0);
    expect(sched.size).toBe(0);
    clock.advance(1000);
    expect(expired).toBe(0);
  });
});
