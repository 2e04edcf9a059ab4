import { describe, expect, it } from 'vitest';
import { planFailover, planRebalance, planStart, splitByCapacity } from '../../src/dialects/sharding/assignment.js';
import { bucketOf, budgetRemaining, drain, dropWhere, emptyQueue, enqueue, type QueueConfig, type QueueState, type Request } from '../../src/dialects/sharding/identify-queue.js';

const ids = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);
const c = (name: string, capacity = 1) => ({ name, capacity });
const sizes = (m: Map<string, number[]>) => Object.fromEntries([...m].map(([k, v]) => [k, v.length]));

describe('assignment: splitByCapacity', () => {
  it('splits equally into contiguous chunks, in order', () => {
    const m = splitByCapacity(ids(16), [c('a'), c('b')]);
    expect(m.get('a')).toEqual(ids(8));
    expect(m.get('b')).toEqual(ids(8, 8));
  });

  it('weights by capacity', () => {
    expect(sizes(splitByCapacity(ids(16), [c('a', 1), c('b', 3)]))).toEqual({ a: 4, b: 12 });
    expect(sizes(splitByCapacity(ids(10), [c('a', 2), c('b', 1), c('c', 2)]))).toEqual({ a: 4, b: 2, c: 4 });
  });

  it('hands remainders out by largest fraction, earlier control first on ties', () => {
    expect(sizes(splitByCapacity(ids(10), [c('a'), c('b'), c('c')]))).toEqual({ a: 4, b: 3, c: 3 });
    expect(sizes(splitByCapacity(ids(2), [c('a'), c('b'), c('c')]))).toEqual({ a: 1, b: 1, c: 0 });
  });

  it('keeps every id exactly once, for any capacities', () => {
    for (let n = 0; n < 40; n++) {
      const caps = [1, 2.5, 0.3, 7].slice(0, 1 + (n % 4));
      const m = splitByCapacity(ids(n), caps.map((cap, i) => c(`c${i}`, cap)));
      expect([...m.values()].flat()).toEqual(ids(n));
    }
  });

  it('works on non-contiguous ids and returns nothing for no controls', () => {
    expect(splitByCapacity([1, 5, 9, 10], [c('a'), c('b')]).get('b')).toEqual([9, 10]);
    expect(splitByCapacity(ids(4), []).size).toBe(0);
  });
});

describe('assignment: planStart', () => {
  it('keeps the last `redundancy` controls as standbys', () => {
    const plan = planStart(ids(16), [c('a'), c('b'), c('c')], 1);
    expect(plan).toEqual([
      { name: 'a', ids: ids(8), redundant: false },
      { name: 'b', ids: ids(8, 8), redundant: false },
      { name: 'c', ids: [], redundant: true },
    ]);
  });

  it('never makes every control a standby while shards need a home', () => {
    expect(planStart(ids(4), [c('a')], 3)).toEqual([{ name: 'a', ids: ids(4), redundant: false }]);
    expect(planStart(ids(4), [c('a'), c('b')], 5).map((p) => p.redundant)).toEqual([false, true]);
  });

  it('makes everyone a standby when there is nothing to place', () => {
    expect(planStart([], [c('a'), c('b')], 0).map((p) => p.redundant)).toEqual([true, true]);
    expect(planStart(ids(3), [], 0)).toEqual([]);
  });
});

describe('assignment: planFailover', () => {
  it('gives the whole lost set to the first standby', () => {
    const m = planFailover([4, 5, 6, 7], [
      { name: 'a', capacity: 1, standby: false },
      { name: 's1', capacity: 1, standby: true },
      { name: 's2', capacity: 1, standby: true },
    ]);
    expect([...m]).toEqual([['s1', [4, 5, 6, 7]]]);
  });

  it('splits by capacity when there is no standby', () => {
    const m = planFailover(ids(8, 8), [
      { name: 'a', capacity: 1, standby: false },
      { name: 'b', capacity: 3, standby: false },
    ]);
    expect([...m]).toEqual([
      ['a', [8, 9]],
      ['b', [10, 11, 12, 13, 14, 15]],
    ]);
  });

  it('plans nothing without candidates or shards', () => {
    expect(planFailover([1], []).size).toBe(0);
    expect(planFailover([], [{ name: 'a', capacity: 1, standby: true }]).size).toBe(0);
  });
});

describe('assignment: planRebalance', () => {
  it('moves only the shards whose target owner differs, grouped by (from, to)', () => {
    const owners = [...Array(8).fill('a'), ...Array(8).fill('b')] as string[];
    const moves = planRebalance(owners, [c('a'), c('b'), c('c')], 0);
    // target: a 0-5, b 6-10, c 11-15
    expect(moves).toEqual([
      { from: 'a', to: 'b', ids: [6, 7] },
      { from: 'b', to: 'c', ids: [11, 12, 13, 14, 15] },
    ]);
  });

  it('is empty for a balanced fleet and places unowned shards', () => {
    expect(planRebalance(['a', 'a', 'b', 'b'], [c('a'), c('b')], 0)).toEqual([]);
    expect(planRebalance([null, null], [c('a')], 0)).toEqual([{ from: null, to: 'a', ids: [0, 1] }]);
  });
});

// ---------------------------------------------------------------------------------

const cfg: QueueConfig = { maxConcurrency: 2, identifyWindow: 5000, sessionStartLimit: 1000, budgetPeriod: 86_400_000 };
const all = () => true;
const req = (shard: number, control = 'a'): Request => ({ shard, control });
function q(...reqs: Request[]): QueueState {
  let s = emptyQueue(cfg.maxConcurrency);
  for (const r of reqs) s = enqueue(s, r);
  return s;
}

describe('identify queue', () => {
  it('buckets by shard_id % max_concurrency', () => {
    expect([0, 1, 2, 3, 17].map((s) => bucketOf(s, 4))).toEqual([0, 1, 2, 3, 1]);
  });

  it('grants one per bucket per window, at once when the bucket is free', () => {
    const r = drain(q(req(0), req(1), req(2), req(3)), 1000, cfg, all);
    expect(r.grants).toEqual([req(0), req(1)]);
    expect(r.state.waiting).toEqual([req(2), req(3)]);
    expect(r.nextAt).toBe(6000);
    expect(drain(r.state, 5999, cfg, all).grants).toEqual([]);
    const r2 = drain(r.state, 6000, cfg, all);
    expect(r2.grants).toEqual([req(2), req(3)]);
    expect(r2.nextAt).toBeNull();
  });

  it('serves a bucket in FIFO order', () => {
    let s = q(req(4, 'x'), req(0, 'y'), req(2, 'z'));
    const order: Request[] = [];
    for (let t = 0; t <= 10_000; t += 5000) {
      const r = drain(s, t, cfg, all);
      order.push(...r.grants);
      s = r.state;
    }
    expect(order).toEqual([req(4, 'x'), req(0, 'y'), req(2, 'z')]);
  });

  it('keeps one request per (shard, control), and drops requests that are no longer eligible', () => {
    expect(q(req(1), req(1)).waiting).toHaveLength(1);
    const r = drain(q(req(0, 'a'), req(2, 'b')), 0, cfg, (x) => x.control !== 'a');
    expect(r.grants).toEqual([req(2, 'b')]);
    expect(r.state.waiting).toEqual([]);
    expect(dropWhere(q(req(0, 'a'), req(1, 'b')), (x) => x.control === 'a').waiting).toEqual([req(1, 'b')]);
  });

  it('stops granting when the daily budget is spent, and starts again after the period', () => {
    const small: QueueConfig = { ...cfg, sessionStartLimit: 2 };
    let r = drain(q(req(0), req(1), req(3)), 0, small, all);
    expect(r.grants).toHaveLength(2);
    expect(budgetRemaining(r.state, 0, small)).toBe(0);
    r = drain(r.state, 10_000, small, all);
    expect(r.grants).toEqual([]);
    expect(r.exhausted).toBe(true);
    expect(r.nextAt).toBe(86_400_000);
    r = drain(r.state, 86_400_000, small, all);
    expect(r.grants).toEqual([req(3)]);
    expect(budgetRemaining(r.state, 86_400_000, small)).toBe(1);
  });

  it('grants nothing with a budget of 0', () => {
    const r = drain(q(req(0)), 0, { ...cfg, sessionStartLimit: 0 }, all);
    expect(r.grants).toEqual([]);
    expect(r.nextAt).toBeNull();
    expect(r.exhausted).toBe(true);
  });

  it('never breaks the bucket/window rule, whatever arrives when (seeded random)', () => {
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const c4: QueueConfig = { maxConcurrency: 4, identifyWindow: 5000, sessionStartLimit: 1e9 };
    let s = emptyQueue(4);
    const last = new Map<number, number>();
    let t = 0;
    for (let i = 0; i < 2000; i++) {
      t += Math.floor(rand() * 2000);
      if (rand() < 0.7) s = enqueue(s, req(Math.floor(rand() * 64), `c${Math.floor(rand() * 3)}`));
      const r = drain(s, t, c4, all);
      s = r.state;
      const seen = new Set<number>();
      for (const g of r.grants) {
        const b = bucketOf(g.shard, 4);
        expect(seen.has(b)).toBe(false);
        seen.add(b);
        const prev = last.get(b);
        if (prev !== undefined) expect(t - prev).toBeGreaterThanOrEqual(5000);
        last.set(b, t);
      }
      if (r.nextAt !== null) expect(r.nextAt).toBeGreaterThanOrEqual(t);
    }
  });
});
