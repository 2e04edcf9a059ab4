import { describe, expect, it } from 'vitest';
import { backoffDelay } from '../../src/client/backoff.js';

/** A tiny deterministic LCG, values in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** The largest value random() can return (just under 1). */
const almostOne = 1 - 2 ** -53;

describe('backoffDelay', () => {
  it('grows by the factor from minMs and caps at maxMs (upper bound)', () => {
    const top = (attempt: number): number => backoffDelay(attempt, { random: () => almostOne });
    expect(top(0)).toBe(250);
    expect(top(1)).toBe(500);
    expect(top(2)).toBe(1000);
    expect(top(3)).toBe(2000);
    expect(top(6)).toBe(16_000);
    expect(top(7)).toBe(30_000);
    expect(top(8)).toBe(30_000);
    expect(top(50)).toBe(30_000);
    expect(top(10_000)).toBe(30_000);
  });

  it('never goes below a tenth of the ceiling (lower bound)', () => {
    const low = (attempt: number): number => backoffDelay(attempt, { random: () => 0 });
    expect(low(0)).toBe(25);
    expect(low(1)).toBe(50);
    expect(low(4)).toBe(400);
    expect(low(20)).toBe(3000);
  });

  it('is monotone in attempt for a fixed random value', () => {
    for (const r of [0, 0.25, 0.5, 0.99]) {
      let prev = -1;
      for (let a = 0; a < 30; a++) {
        const d = backoffDelay(a, { random: () => r });
        expect(d).toBeGreaterThanOrEqual(prev);
        prev = d;
      }
    }
  });

  it('uses the injected random source: midpoint jitter', () => {
    // ceiling 1000 at attempt 2; 0.1 + 0.9 * 0.5 = 0.55
    expect(backoffDelay(2, { random: () => 0.5 })).toBe(550);
    let calls = 0;
    backoffDelay(3, {
      random: () => {
        calls++;
        return 0.3;
      },
    });
    expect(calls).toBe(1);
  });

  it('honours minMs, maxMs and factor', () => {
    const opts = { minMs: 100, maxMs: 1000, factor: 3, random: () => almostOne };
    expect([0, 1, 2, 3, 4].map((a) => backoffDelay(a, opts))).toEqual([100, 300, 900, 1000, 1000]);
    expect(backoffDelay(0, { minMs: 5000, maxMs: 1000, random: () => almostOne })).toBe(1000);
  });

  it('treats a negative attempt as attempt 0', () => {
    expect(backoffDelay(-3, { random: () => almostOne })).toBe(250);
  });

  it('stays within [0.1, 1] x ceiling for many random draws', () => {
    const rand = lcg(7);
    const opts = { minMs: 250, maxMs: 30_000, factor: 2, random: rand };
    const bad: Array<{ attempt: number; d: number }> = [];
    for (let i = 0; i < 5000; i++) {
      const attempt = i % 12;
      const ceiling = Math.min(30_000, 250 * 2 ** attempt);
      const d = backoffDelay(attempt, opts);
      // Rounded to whole milliseconds, so allow half a millisecond below.
      if (!Number.isInteger(d) || d < 0.1 * ceiling - 0.5 || d > ceiling) bad.push({ attempt, d });
    }
    expect(bad).toEqual([]);
  });

  it('spreads delays across the range (jitter is real)', () => {
    const rand = lcg(99);
    const ds = new Set<number>();
    for (let i = 0; i < 200; i++) ds.add(backoffDelay(7, { random: rand }));
    expect(ds.size).toBeGreaterThan(150);
    expect(Math.min(...ds)).toBeLessThan(3000 + 0.1 * 27_000);
    expect(Math.max(...ds)).toBeGreaterThan(30_000 - 0.1 * 27_000);
  });

  it('defaults to Math.random within bounds', () => {
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(3);
      expect(d).toBeGreaterThanOrEqual(200);
      expect(d).toBeLessThanOrEqual(2000);
    }
  });
});
