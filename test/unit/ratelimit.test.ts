import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { LogLimiter, TokenBucket } from '../../src/core/ratelimit.js';

describe('TokenBucket', () => {
  it('allows a burst, then refuses until time refills it at the rate', () => {
    const clock = new ManualClock();
    const b = new TokenBucket(() => clock.now(), { perSecond: 10, burst: 3 });
    expect([b.take(), b.take(), b.take(), b.take()]).toEqual([true, true, true, false]);
    expect(b.waitMs()).toBe(100);
    clock.advance(99);
    expect(b.take()).toBe(false);
    clock.advance(1);
    expect(b.take()).toBe(true);
    expect(b.take()).toBe(false);
    // Never more than the burst, however long it waits.
    clock.advance(60_000);
    expect(b.tokens).toBe(3);
    expect(b.full).toBe(true);
  });

  it('takes a cost only when the whole cost is there', () => {
    const clock = new ManualClock();
    const b = new TokenBucket(() => clock.now(), { perSecond: 1000, burst: 1000 });
    expect(b.take(800)).toBe(true);
    expect(b.take(300)).toBe(false);
    expect(b.tokens).toBe(200);
    clock.advance(100);
    expect(b.take(300)).toBe(true);
  });

  it('is unlimited with a rate of 0', () => {
    const clock = new ManualClock();
    const b = new TokenBucket(() => clock.now(), { perSecond: 0, burst: 0 });
    for (let i = 0; i < 1000; i++) expect(b.take(1e9)).toBe(true);
  });
});

describe('LogLimiter', () => {
  it('lets a burst of lines per key through, then one per interval with the count held back', () => {
    const clock = new ManualClock();
    const log = new LogLimiter<string>(() => clock.now(), { perSecond: 1, burst: 2 });
    expect(log.allow('a')).toBe(0);
    expect(log.allow('a')).toBe(0);
    for (let i = 0; i < 2849; i++) expect(log.allow('a')).toBeUndefined();
    // Another peer is not held back by the first.
    expect(log.allow('b')).toBe(0);
    clock.advance(1000);
    expect(log.allow('a')).toBe(2849);
    expect(log.allow('a')).toBeUndefined();
    clock.advance(1000);
    expect(log.allow('a')).toBe(1);
  });

  it('forgets keys, and sweeps idle full ones when it reaches maxKeys', () => {
    const clock = new ManualClock();
    const log = new LogLimiter<number>(() => clock.now(), { perSecond: 1, burst: 1 }, 100);
    for (let i = 0; i < 100; i++) log.allow(i);
    expect(log.size).toBe(100);
    log.forget(0);
    expect(log.size).toBe(99);
    log.allow(0);
    // Key 5 has lines held back: it is kept until they are reported.
    expect(log.allow(5)).toBeUndefined();
    clock.advance(1000);
    log.allow(1000);
    expect(log.size).toBe(2);
    expect(log.allow(5)).toBe(1);
  });
});
