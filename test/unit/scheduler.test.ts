import { describe, expect, it } from 'vitest';
import { ManualClock, type Cancel, type Clock } from '../../src/core/clock.js';
import { Scheduler, type Timer } from '../../src/core/scheduler.js';

/** Wraps a ManualClock and records how many wake-ups are live at the same time. */
class CountingClock implements Clock {
  readonly inner = new ManualClock(0);
  wakes = 0;
  maxLive = 0;
  now(): number {
    return this.inner.now();
  }
  wake(ms: number, cb: () => void): Cancel {
    this.wakes++;
    const cancel = this.inner.wake(ms, cb);
    this.maxLive = Math.max(this.maxLive, this.inner.pending);
    return cancel;
  }
  advance(ms: number): void {
    this.inner.advance(ms);
  }
  get pending(): number {
    return this.inner.pending;
  }
}

/** A tiny deterministic LCG (Numerical Recipes constants), values in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function setup(onError?: (err: unknown) => void): { clock: CountingClock; sched: Scheduler; errors: unknown[] } {
  const clock = new CountingClock();
  const errors: unknown[] = [];
  const sched = new Scheduler(clock, onError ?? ((e) => errors.push(e)));
  return { clock, sched, errors };
}

describe('ManualClock', () => {
  it('starts at the given time and only moves when advanced', () => {
    const c = new ManualClock(1000);
    expect(c.now()).toBe(1000);
    c.advance(250);
    expect(c.now()).toBe(1250);
  });

  it('runs wakes in due order, at their due time, and supports cancel', () => {
    const c = new ManualClock(0);
    const seen: Array<[string, number]> = [];
    c.wake(30, () => seen.push(['c', c.now()]));
    c.wake(10, () => seen.push(['a', c.now()]));
    const cancel = c.wake(20, () => seen.push(['x', c.now()]));
    c.wake(10, () => seen.push(['b', c.now()]));
    expect(c.pending).toBe(4);
    cancel();
    expect(c.pending).toBe(3);
    c.advance(25);
    expect(seen).toEqual([['a', 10], ['b', 10]]);
    expect(c.now()).toBe(25);
    c.advance(100);
    expect(seen).toEqual([['a', 10], ['b', 10], ['c', 30]]);
    expect(c.pending).toBe(0);
  });

  it('treats negative delays as zero', () => {
    const c = new ManualClock(0);
    let hit = false;
    c.wake(-50, () => (hit = true));
    c.advance(0);
    expect(hit).toBe(true);
  });
});

describe('Scheduler', () => {
  it('runs many timers in order of due time', () => {
    const { clock, sched } = setup();
    const order: number[] = [];
    const delays = [50, 10, 40, 20, 30, 0, 60, 5];
    for (const d of delays) sched.after(d, () => order.push(d));
    expect(sched.size).toBe(delays.length);
    clock.advance(100);
    expect(order).toEqual([...delays].sort((a, b) => a - b));
    expect(sched.size).toBe(0);
  });

  it('runs timers with equal due times in insertion order', () => {
    const { clock, sched } = setup();
    const order: string[] = [];
    for (const name of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']) sched.after(100, () => order.push(name));
    sched.after(50, () => order.push('early'));
    clock.advance(100);
    expect(order).toEqual(['early', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j']);
  });

  it('fires a timer at its due time, not before', () => {
    const { clock, sched } = setup();
    const at: number[] = [];
    sched.after(100, () => at.push(clock.now()));
    clock.advance(99);
    expect(at).toEqual([]);
    clock.advance(1);
    expect(at).toEqual([100]);
  });

  it('treats a negative delay as zero', () => {
    const { clock, sched } = setup();
    let hit = 0;
    sched.after(-10, () => hit++);
    clock.advance(0);
    expect(hit).toBe(1);
  });

  it('exposes now() from its clock', () => {
    const { clock, sched } = setup();
    clock.advance(42);
    expect(sched.now()).toBe(42);
    expect(sched.clock).toBe(clock);
  });

  it('does not run a timer cancelled before it fires', () => {
    const { clock, sched } = setup();
    const order: string[] = [];
    const t = sched.after(10, () => order.push('cancelled'));
    sched.after(20, () => order.push('kept'));
    expect(t.active).toBe(true);
    t.cancel();
    expect(t.active).toBe(false);
    expect(sched.size).toBe(1);
    clock.advance(50);
    expect(order).toEqual(['kept']);
  });

  it('ignores cancel after the timer fired', () => {
    const { clock, sched } = setup();
    let hits = 0;
    const t = sched.after(10, () => hits++);
    clock.advance(10);
    expect(hits).toBe(1);
    expect(t.active).toBe(false);
    t.cancel();
    t.cancel();
    clock.advance(100);
    expect(hits).toBe(1);
    expect(sched.size).toBe(0);
  });

  it('lets a callback cancel a later timer due at the same time', () => {
    const { clock, sched } = setup();
    const order: string[] = [];
    const ref: { second?: Timer } = {};
    sched.after(10, () => {
      order.push('first');
      ref.second?.cancel();
    });
    ref.second = sched.after(10, () => order.push('second'));
    sched.after(10, () => order.push('third'));
    clock.advance(10);
    expect(order).toEqual(['first', 'third']);
  });

  it('every() runs periodically until cancelled', () => {
    const { clock, sched } = setup();
    const at: number[] = [];
    const t = sched.every(100, () => at.push(clock.now()));
    clock.advance(99);
    expect(at).toEqual([]);
    clock.advance(1);
    expect(at).toEqual([100]);
    clock.advance(350);
    expect(at).toEqual([100, 200, 300, 400]);
    expect(sched.size).toBe(1);
    expect(t.active).toBe(true);
    t.cancel();
    expect(sched.size).toBe(0);
    clock.advance(1000);
    expect(at).toEqual([100, 200, 300, 400]);
  });

  it('every() can be cancelled from inside its own callback', () => {
    const { clock, sched } = setup();
    let n = 0;
    const t: Timer = sched.every(10, () => {
      n++;
      if (n === 3) t.cancel();
    });
    clock.advance(1000);
    expect(n).toBe(3);
    expect(t.active).toBe(false);
    expect(sched.size).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('every() rejects a non-positive interval', () => {
    const { sched } = setup();
    expect(() => sched.every(0, () => {})).toThrow(RangeError);
    expect(() => sched.every(-5, () => {})).toThrow(RangeError);
    expect(() => sched.every(Number.NaN, () => {})).toThrow(RangeError);
    expect(sched.size).toBe(0);
  });

  it('interleaves every() with one-shot timers by due time', () => {
    const { clock, sched } = setup();
    const order: string[] = [];
    const t = sched.every(30, () => order.push(`tick@${clock.now()}`));
    sched.after(45, () => order.push('once@45'));
    sched.after(60, () => order.push('once@60'));
    clock.advance(90);
    // The periodic entry was created first, so it wins ties at 60.
    expect(order).toEqual(['tick@30', 'once@45', 'tick@60', 'once@60', 'tick@90']);
    t.cancel();
  });

  it('runs a timer scheduled from inside a callback for a time reached during the same advance', () => {
    const { clock, sched } = setup();
    const order: Array<[string, number]> = [];
    sched.after(10, () => {
      order.push(['outer', clock.now()]);
      sched.after(5, () => {
        order.push(['inner', clock.now()]);
        sched.after(0, () => order.push(['inner-zero', clock.now()]));
      });
    });
    sched.after(12, () => order.push(['other', clock.now()]));
    sched.after(100, () => order.push(['late', clock.now()]));
    clock.advance(50);
    expect(order).toEqual([
      ['outer', 10],
      ['other', 12],
      ['inner', 15],
      ['inner-zero', 15],
    ]);
    expect(sched.size).toBe(1);
    clock.advance(50);
    expect(order.at(-1)).toEqual(['late', 100]);
    expect(sched.size).toBe(0);
    expect(clock.pending).toBe(0);
    expect(clock.maxLive).toBe(1);
  });

  it('runs an after(0) scheduled from a callback in the same advance', () => {
    const { clock, sched } = setup();
    const order: string[] = [];
    sched.after(10, () => {
      order.push('a');
      sched.after(0, () => order.push('a0'));
    });
    sched.after(10, () => order.push('b'));
    clock.advance(10);
    expect(order).toEqual(['a', 'b', 'a0']);
    expect(clock.now()).toBe(10);
  });

  it('clear() cancels everything and drops the clock wake-up', () => {
    const { clock, sched } = setup();
    let hits = 0;
    const timers = [sched.after(10, () => hits++), sched.after(20, () => hits++), sched.every(5, () => hits++)];
    expect(sched.size).toBe(3);
    expect(clock.pending).toBe(1);
    sched.clear();
    expect(sched.size).toBe(0);
    expect(clock.pending).toBe(0);
    for (const t of timers) expect(t.active).toBe(false);
    clock.advance(1000);
    expect(hits).toBe(0);
    // Still usable afterwards.
    sched.after(10, () => hits++);
    clock.advance(10);
    expect(hits).toBe(1);
  });

  it('clear() from inside a callback stops the remaining timers', () => {
    const { clock, sched } = setup();
    const order: string[] = [];
    sched.after(10, () => {
      order.push('a');
      sched.clear();
    });
    sched.after(10, () => order.push('b'));
    sched.after(20, () => order.push('c'));
    clock.advance(100);
    expect(order).toEqual(['a']);
    expect(sched.size).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('sends a throwing callback to onError and keeps running the others', () => {
    const { clock, sched, errors } = setup();
    const order: string[] = [];
    const boom = new Error('boom');
    sched.after(10, () => order.push('before'));
    sched.after(10, () => {
      throw boom;
    });
    sched.after(10, () => order.push('after'));
    sched.after(20, () => order.push('later'));
    let ticks = 0;
    const t = sched.every(15, () => {
      ticks++;
      throw new Error(`tick ${ticks}`);
    });
    clock.advance(40);
    expect(order).toEqual(['before', 'after', 'later']);
    expect(errors[0]).toBe(boom);
    expect(errors.map((e) => (e as Error).message)).toEqual(['boom', 'tick 1', 'tick 2']);
    // A throwing periodic timer keeps its schedule.
    expect(ticks).toBe(2);
    expect(t.active).toBe(true);
    t.cancel();
  });

  it('counts live timers in size', () => {
    const { clock, sched } = setup();
    expect(sched.size).toBe(0);
    const a = sched.after(10, () => {});
    const b = sched.after(20, () => {});
    const c = sched.every(30, () => {});
    expect(sched.size).toBe(3);
    b.cancel();
    expect(sched.size).toBe(2);
    b.cancel();
    expect(sched.size).toBe(2);
    clock.advance(10);
    expect(a.active).toBe(false);
    expect(sched.size).toBe(1);
    clock.advance(100);
    expect(sched.size).toBe(1);
    c.cancel();
    expect(sched.size).toBe(0);
  });

  it('arms only one clock wake-up at a time', () => {
    const { clock, sched } = setup();
    const timers: Timer[] = [];
    // Add in decreasing order, so every add moves the earliest deadline.
    for (let d = 1000; d > 0; d -= 10) timers.push(sched.after(d, () => {}));
    expect(clock.pending).toBe(1);
    // Adding later deadlines does not re-arm.
    const wakes = clock.wakes;
    sched.after(5000, () => {});
    expect(clock.wakes).toBe(wakes);
    expect(clock.pending).toBe(1);
    for (const t of timers.slice(0, 50)) t.cancel();
    sched.every(7, () => {});
    expect(clock.pending).toBe(1);
    clock.advance(3000);
    expect(clock.pending).toBe(1);
    sched.clear();
    expect(clock.pending).toBe(0);
    expect(clock.maxLive).toBe(1);
  });

  it('arms no wake-up when nothing is scheduled', () => {
    const { clock, sched } = setup();
    const t = sched.after(10, () => {});
    t.cancel();
    clock.advance(10);
    expect(clock.pending).toBe(0);
    expect(sched.size).toBe(0);
  });

  it('reports errors to the default handler through queueMicrotask', () => {
    const clock = new ManualClock(0);
    const sched = new Scheduler(clock);
    const boom = new Error('async boom');
    const seen: unknown[] = [];
    const original = globalThis.queueMicrotask;
    globalThis.queueMicrotask = (cb: () => void) => {
      try {
        cb();
      } catch (e) {
        seen.push(e);
      }
    };
    try {
      let after = false;
      sched.after(1, () => {
        throw boom;
      });
      sched.after(1, () => (after = true));
      clock.advance(1);
      expect(after).toBe(true);
      expect(seen).toEqual([boom]);
    } finally {
      globalThis.queueMicrotask = original;
    }
  });

  it('fires 2,000 random timers with random cancels in (due, insertion) order', () => {
    const { clock, sched, errors } = setup();
    const rand = lcg(0xc0ffee);
    interface Planned {
      id: number;
      due: number;
      seq: number;
      timer: Timer;
      cancelled: boolean;
    }
    const planned: Planned[] = [];
    const fired: number[] = [];
    let seq = 0;
    const add = (delay: number): void => {
      const id = planned.length;
      const p: Planned = {
        id,
        due: clock.now() + delay,
        seq: seq++,
        cancelled: false,
        timer: sched.after(delay, () => {
          expect(clock.now()).toBe(p.due);
          fired.push(id);
        }),
      };
      planned.push(p);
    };
    // Small delay range so many timers share a due time.
    for (let i = 0; i < 1500; i++) add(Math.floor(rand() * 500));
    // Move time a bit, then add more with the clock elsewhere.
    clock.advance(100);
    for (let i = 0; i < 500; i++) add(Math.floor(rand() * 500));
    expect(planned.length).toBe(2000);
    // Cancel about a quarter of everything, fired or not.
    for (const p of planned) {
      if (rand() < 0.25) {
        if (p.timer.active) p.cancelled = true;
        p.timer.cancel();
      }
    }
    const firedEarly = fired.length;
    expect(sched.size).toBe(planned.filter((p) => p.timer.active).length);
    // Advance in random steps.
    while (clock.now() < 700) clock.advance(1 + Math.floor(rand() * 37));
    expect(errors).toEqual([]);
    expect(sched.size).toBe(0);
    expect(clock.pending).toBe(0);
    expect(clock.maxLive).toBe(1);

    const expected = planned
      .filter((p) => !p.cancelled)
      .sort((a, b) => a.due - b.due || a.seq - b.seq)
      .map((p) => p.id);
    expect(fired).toEqual(expected);
    expect(firedEarly).toBeGreaterThan(0);
    expect(fired.length).toBeGreaterThan(1000);
    expect(fired.length).toBeLessThan(2000);
  });

  it('keeps fire order with 2,000 random timers added from inside callbacks', () => {
    const { clock, sched, errors } = setup();
    const rand = lcg(12345);
    const fired: Array<{ due: number; seq: number }> = [];
    let seq = 0;
    let remaining = 2000;
    const add = (): void => {
      remaining--;
      const due = clock.now() + Math.floor(rand() * 50);
      const s = seq++;
      const t = sched.after(due - clock.now(), () => {
        fired.push({ due, seq: s });
        if (remaining > 0 && rand() < 0.7) add();
      });
      if (rand() < 0.1) t.cancel();
    };
    for (let i = 0; i < 200; i++) add();
    while (remaining > 0 && sched.size > 0) {
      clock.advance(1 + Math.floor(rand() * 20));
      if (sched.size < 50) for (let i = 0; i < 20 && remaining > 0; i++) add();
    }
    clock.advance(1000);
    expect(errors).toEqual([]);
    expect(clock.maxLive).toBe(1);
    expect(fired.length).toBeGreaterThan(1000);
    for (let i = 1; i < fired.length; i++) {
      const a = fired[i - 1] as { due: number; seq: number };
      const b = fired[i] as { due: number; seq: number };
      expect(a.due < b.due || (a.due === b.due && a.seq < b.seq)).toBe(true);
    }
  });
});
