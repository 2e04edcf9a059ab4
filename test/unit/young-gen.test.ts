import { describe, expect, it } from 'vitest';
import { BUSY_SCAVENGES_PER_SECOND, ScavengeRate } from '../../src/young-gen.js';

describe('ScavengeRate', () => {
  it('is busy at the tenth scavenge within one second', () => {
    expect(BUSY_SCAVENGES_PER_SECOND).toBe(10);
    const r = new ScavengeRate();
    for (let i = 0; i < 9; i++) expect(r.scavenge(i * 100)).toBe(false);
    expect(r.scavenge(950)).toBe(true);
  });

  it('is not busy when ten of them take a second or more', () => {
    const r = new ScavengeRate(10);
    for (let i = 0; i < 10; i++) expect(r.scavenge(i * 111.2)).toBe(false);
  });

  it('looks at the last ones only, so a steady slow rate never gets there and a later rush does', () => {
    const r = new ScavengeRate(3);
    for (let i = 0; i < 20; i++) expect(r.scavenge(i * 600)).toBe(false);
    expect(r.scavenge(12_000)).toBe(false);
    expect(r.scavenge(12_100)).toBe(true);
  });
});
