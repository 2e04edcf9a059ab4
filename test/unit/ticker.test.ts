import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { Ticker } from '../../src/core/ticker.js';

function setup(): { clock: ManualClock; sched: Scheduler; ticks: Array<[string, number]>; t0: number } {
  const clock = new ManualClock(50_000);
  const sched = new Scheduler(clock, (e) => {
    throw e;
  });
  return { clock, sched, ticks: [], t0: clock.now() };
}

describe('Ticker', () => {
  it('ticks each member every period, first one period after it was added, with one timer', () => {
    const { clock, sched, ticks, t0 } = setup();
    const t = new Ticker<string>(sched, 100, (m, now) => ticks.push([m, now - t0]));
    t.add('a');
    clock.advance(30);
    t.add('b');
    expect(sched.size).toBe(1);
    clock.advance(69);
    expect(ticks).toEqual([]);
    clock.advance(1);
    expect(ticks).toEqual([['a', 100]]);
    clock.advance(230);
    expect(ticks).toEqual([
      ['a', 100],
      ['b', 130],
      ['a', 200],
      ['b', 230],
      ['a', 300],
      ['b', 330],
    ]);
    expect(sched.size).toBe(1);
  });

  it('stops ticking a deleted member, and holds no timer when empty', () => {
    const { clock, sched, ticks, t0 } = setup();
    const t = new Ticker<string>(sched, 100, (m, now) => ticks.push([m, now - t0]));
    t.add('a');
    t.add('b');
    clock.advance(150);
    t.delete('a');
    clock.advance(100);
    expect(ticks).toEqual([
      ['a', 100],
      ['b', 100],
      ['b', 200],
    ]);
    t.delete('b');
    expect(t.size).toBe(0);
    expect(sched.size).toBe(0);
    clock.advance(1000);
    expect(ticks.length).toBe(3);
    expect(clock.pending).toBe(0);
  });

  it('lets a tick delete or re-add members', () => {
    const { clock, sched, ticks, t0 } = setup();
    const t: Ticker<string> = new Ticker<string>(sched, 10, (m, now) => {
      ticks.push([m, now - t0]);
      if (m === 'a') t.delete('b');
      if (m === 'c') t.add('c');
    });
    t.add('a');
    t.add('b');
    t.add('c');
    clock.advance(10);
    expect(ticks).toEqual([
      ['a', 10],
      ['c', 10],
    ]);
    clock.advance(10);
    expect(ticks.slice(2)).toEqual([
      ['a', 20],
      ['c', 20],
    ]);
    expect(sched.size).toBe(1);
  });
});
