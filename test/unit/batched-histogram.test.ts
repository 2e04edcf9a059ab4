import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { BatchedHistogram } from '../../src/core/batched-histogram.js';

/** The same observations through prom-client's own Histogram and through BatchedHistogram. */
function pair(): { plain: Registry; batched: Registry; h: Histogram<'outcome'>; b: BatchedHistogram<'outcome'> } {
  const plain = new Registry();
  const batched = new Registry();
  const cfg = { name: 'req_seconds', help: 'h', labelNames: ['outcome'] as const, buckets: [0.001, 0.01, 0.1, 1] };
  const h = new Histogram({ ...cfg, registers: [plain] });
  const b = new BatchedHistogram({ ...cfg, registers: [batched] });
  return { plain, batched, h, b };
}

describe('BatchedHistogram', () => {
  it('scrapes exactly what prom-client would, at every read', async () => {
    const { plain, batched, h, b } = pair();
    const values: Array<[string, number]> = [
      ['complete', 0.0004],
      ['complete', 0.001],
      ['complete', 0.0011],
      ['timeout', 10],
      ['complete', 0.5],
      ['gone', 0.01],
      ['complete', 2],
    ];
    for (const [i, [outcome, v]] of values.entries()) {
      h.observe({ outcome }, v);
      b.observeOne(outcome, v);
      if (i === 3) expect(await batched.metrics()).toBe(await plain.metrics());
    }
    expect(await batched.metrics()).toBe(await plain.metrics());
    // Nothing is counted twice by a second read.
    expect(await batched.metrics()).toBe(await plain.metrics());
  });

  it('keeps counting after the registry was reset', async () => {
    const { plain, batched, h, b } = pair();
    b.observeOne('complete', 0.05);
    h.observe({ outcome: 'complete' }, 0.05);
    await batched.metrics();
    batched.resetMetrics();
    plain.resetMetrics();
    b.observeOne('complete', 0.2);
    h.observe({ outcome: 'complete' }, 0.2);
    expect(await batched.metrics()).toBe(await plain.metrics());
  });
});
