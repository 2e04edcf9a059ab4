import { describe, expect, it } from 'vitest';
import { BURST_CONNECTS_PER_SECOND, ConnectBurst } from '../../src/core/connect-burst.js';

describe('ConnectBurst', () => {
  it('starts a burst at the hundredth connection within one second, once', () => {
    const b = new ConnectBurst();
    expect(BURST_CONNECTS_PER_SECOND).toBe(100);
    for (let i = 0; i < 99; i++) expect(b.connect(i * 10)).toBe(false);
    expect(b.on).toBe(false);
    expect(b.connect(990)).toBe(true);
    expect(b.on).toBe(true);
    expect(b.connect(995)).toBe(false);
  });

  it('never starts at a steady rate just under the threshold', () => {
    const b = new ConnectBurst(100);
    for (let s = 0; s < 10; s++) for (let i = 0; i < 99; i++) expect(b.connect(s * 1000 + i * 10)).toBe(false);
    expect(b.on).toBe(false);
  });

  it('counts within a window that starts at its first connection', () => {
    const b = new ConnectBurst(3);
    expect(b.connect(0)).toBe(false);
    expect(b.connect(999)).toBe(false);
    // A new window from 1000: the two before do not count.
    expect(b.connect(1000)).toBe(false);
    expect(b.connect(1500)).toBe(false);
    expect(b.connect(1999)).toBe(true);
  });

  it('goes on while each second brings the rate, and is over after one that does not', () => {
    const b = new ConnectBurst(3);
    for (let i = 0; i < 3; i++) b.connect(i);
    expect(b.on).toBe(true);
    for (let i = 0; i < 3; i++) b.connect(100 + i);
    expect(b.check()).toBe(false);
    expect(b.on).toBe(true);
    b.connect(1100);
    b.connect(1200);
    expect(b.check()).toBe(true);
    expect(b.on).toBe(false);
    expect(b.check()).toBe(false);
  });

  it('can start again after one is over, counting afresh', () => {
    const b = new ConnectBurst(2);
    b.connect(0);
    expect(b.connect(1)).toBe(true);
    expect(b.check()).toBe(true);
    expect(b.connect(2)).toBe(false);
    expect(b.connect(3)).toBe(true);
  });
});
