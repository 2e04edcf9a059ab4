import { Histogram, type HistogramConfiguration } from 'prom-client';

/**
 * A prom-client Histogram whose `observe` only counts into plain numbers: the bucket,
 * the sum and the count of each label value. The counts are handed to prom-client when
 * the registry is read (the metric's collect hook), so every scrape is exact. A
 * prom-client `observe()` with labels validates and hashes the label set on every call,
 * which was a visible share of a bus request's cost (bench/ANALYSIS.md, P1).
 *
 * For metrics with exactly one label, whose values are known in advance.
 */
export class BatchedHistogram<T extends string> extends Histogram<T> {
  readonly #label: T;
  readonly #bounds: readonly number[];
  /** Per label value: counts per bucket (the last one: above every bound), sum, count. */
  readonly #pending = new Map<string, { buckets: number[]; sum: number; count: number }>();

  constructor(config: HistogramConfiguration<T> & { labelNames: readonly [T] }) {
    const user = config.collect;
    super({
      ...config,
      // prom-client calls collect with the metric as `this`.
      collect(this: Histogram<T>) {
        if (this instanceof BatchedHistogram) this.flush();
        return user?.call(this);
      },
    });
    this.#label = config.labelNames[0];
    this.#bounds = [...(config.buckets ?? [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])].sort((a, b) => a - b);
  }

  /** Counts one observation for `value` of the label (no label hashing). */
  observeOne(labelValue: string, value: number): void {
    if (!Number.isFinite(value)) return;
    let p = this.#pending.get(labelValue);
    if (!p) {
      p = { buckets: new Array<number>(this.#bounds.length + 1).fill(0), sum: 0, count: 0 };
      this.#pending.set(labelValue, p);
    }
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && value > (b[i] as number)) i++;
    (p.buckets[i] as number)++;
    p.sum += value;
    p.count++;
  }

  /** Hands the counts to prom-client (done on every read of the registry). */
  flush(): void {
    for (const [labelValue, p] of this.#pending) {
      if (p.count === 0) continue;
      const labels = { [this.#label]: labelValue } as Partial<Record<T, string>>;
      let entry = this.#entry(labelValue);
      if (!entry) {
        this.zero(labels);
        entry = this.#entry(labelValue);
      }
      if (entry) {
        const values = entry.bucketValues;
        for (let i = 0; i < this.#bounds.length; i++) {
          const bound = this.#bounds[i] as number;
          values[bound] = (values[bound] ?? 0) + (p.buckets[i] as number);
        }
        entry.sum += p.sum;
        entry.count += p.count;
      } else {
        // A prom-client whose internals differ: fall back to its own observe (bucket bounds, so the sum is approximate).
        for (let i = 0; i < this.#bounds.length; i++) for (let k = 0; k < (p.buckets[i] as number); k++) this.observe(labels, this.#bounds[i] as number);
      }
      p.buckets.fill(0);
      p.sum = 0;
      p.count = 0;
    }
  }

  #entry(labelValue: string): { bucketValues: Record<number, number>; sum: number; count: number } | undefined {
    const map = (this as unknown as { hashMap?: Record<string, { labels?: Record<string, unknown>; bucketValues?: Record<number, number>; sum?: number; count?: number }> }).hashMap;
    if (!map) return undefined;
    for (const k in map) {
      const v = map[k];
      if (v && v.labels?.[this.#label] === labelValue && v.bucketValues && typeof v.sum === 'number' && typeof v.count === 'number') {
        return v as { bucketValues: Record<number, number>; sum: number; count: number };
      }
    }
    return undefined;
  }
}
