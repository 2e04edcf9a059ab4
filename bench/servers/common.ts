import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import type { Handlers } from '../lib/ipc.js';

/** What every Node server child answers, besides its own methods. */
export interface LagReport {
  p50: number;
  p99: number;
  max: number;
  mean: number;
  /** Garbage collection in the window: pauses, their longest and their sum (ms). */
  gcCount?: number;
  gcMax?: number;
  gcTotal?: number;
}

/**
 * gc (needs --expose-gc), event-loop lag measured only between lagStart and lagStop,
 * and exit (graceful stop, so --cpu-prof can write its profile).
 */
export function serverHandlers(stop: () => Promise<void>): Handlers {
  let h: ReturnType<typeof monitorEventLoopDelay> | undefined;
  let gcObs: PerformanceObserver | undefined;
  const gc = { count: 0, max: 0, total: 0 };
  return {
    gc: () => {
      const gc = (globalThis as { gc?: () => void }).gc;
      if (!gc) return false;
      gc();
      gc();
      return true;
    },
    /** The V8 heap / external / array buffer split, to explain an RSS figure. */
    mem: () => process.memoryUsage(),
    /** V8's heap spaces (used and committed bytes each), to tell the young generation from the rest. */
    /** Writes a heap snapshot to `file` (to see where a figure goes). */
    snapshot: (file: string) => v8.writeHeapSnapshot(file),
    heapSpaces: () => v8.getHeapSpaceStatistics().map((s) => ({ name: s.space_name, used: s.space_used_size, committed: s.space_size })),
    /** CLOCK_MONOTONIC in µs: the clock V8's CPU profiles use, to cut a profile to the measured windows. */
    mark: () => Number(process.hrtime.bigint() / 1000n),
    lagStart: () => {
      h?.disable();
      // 1 ms resolution: the histogram samples the loop's delay every millisecond.
      h = monitorEventLoopDelay({ resolution: 1 });
      h.enable();
      gcObs?.disconnect();
      gc.count = gc.max = gc.total = 0;
      gcObs = new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          gc.count++;
          gc.total += e.duration;
          gc.max = Math.max(gc.max, e.duration);
        }
      });
      gcObs.observe({ entryTypes: ['gc'] });
      return true;
    },
    lagStop: (): LagReport => {
      if (!h) throw new Error('lagStart was not called');
      h.disable();
      const ms = (ns: number): number => ns / 1e6;
      gcObs?.disconnect();
      gcObs = undefined;
      const r = { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(h.mean), gcCount: gc.count, gcMax: gc.max, gcTotal: gc.total };
      h = undefined;
      return r;
    },
    exit: () => {
      // Answer first, then stop and exit.
      setImmediate(() => {
        const hard = setTimeout(() => process.exit(0), 3000);
        stop()
          .catch((err: unknown) => console.error(err))
          .finally(() => {
            clearTimeout(hard);
            process.exit(0);
          });
      });
      return true;
    },
  };
}
