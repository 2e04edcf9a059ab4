import { describe, expect, it } from 'vitest';
import { BeatQueue } from '../../src/dialects/bus/beats.js';
import type { Service } from '../../src/dialects/bus/world-state.js';

function svc(conn: string): Service {
  return {
    conn,
    instance: undefined,
    state: { phase: 'identified' } as unknown as Service['state'],
    headerToken: undefined,
    name: undefined,
    identified: true,
    groups: undefined,
    sourceTail: undefined,
    target: undefined,
    asked: undefined,
    events: undefined,
    eventBytes: undefined,
  };
}

describe('bus heartbeat queue', () => {
  it('gives services back in the order they were queued, with their times', () => {
    const q = new BeatQueue();
    const a = svc('a');
    const b = svc('b');
    q.push(a, 10);
    q.push(b, 20);
    expect(q.nextAt()).toBe(10);
    expect(q.shift()).toBe(a);
    q.push(a, 30);
    expect(q.nextAt()).toBe(20);
    expect(q.shift()).toBe(b);
    expect(q.nextAt()).toBe(30);
    expect(q.shift()).toBe(a);
    expect(q.nextAt()).toBeUndefined();
    expect(q.length).toBe(0);
  });

  it('skips services no longer identified, and keeps its arrays bounded', () => {
    const q = new BeatQueue();
    const all = Array.from({ length: 3000 }, (_, i) => svc(`s${i}`));
    all.forEach((s, i) => q.push(s, i));
    for (const s of all.slice(0, 2000)) s.identified = false;
    expect(q.nextAt()).toBe(2000);
    expect(q.length).toBe(1000);
    // Ticking every live one round keeps the order and the length.
    for (let i = 0; i < 1000; i++) {
      const at = q.nextAt() as number;
      q.push(q.shift(), at + 3000);
    }
    expect(q.length).toBe(1000);
    expect(q.nextAt()).toBe(5000);
  });
});
