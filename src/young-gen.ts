import { constants, PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';

/**
 * Start-up does not grow V8's young generation. Loading Muster (fastify, pino,
 * prom-client, the dialects and their compiled schemas) allocates some 15 MiB that all
 * live as long as the process; V8's scavenger, seeing most of what it copies survive,
 * doubled the semi-spaces up to their 16 MiB maximum, and the pages touched on the way
 * stayed resident: about 13 MiB of an idle server's memory. While the hold is on, the
 * semi-spaces keep their initial size and start-up's long-lived objects go to the old
 * generation, where they end up anyway.
 *
 * The hold must be on before the module graph is parsed (parsing allocates too), so the
 * launcher puts it on (src/cli/main.ts), then imports the rest; `startMuster` releases it
 * once it listens, and from then on V8 sizes the young generation as it always does
 * (kept small for good, it slowed the bench's P4 timing: bench/ANALYSIS.md, issue 12),
 * until connections arrive in a burst (`holdDuringBurst`: then until traffic keeps the
 * young generation busy).
 * A semi-space flag given to node (command line or NODE_OPTIONS, e.g.
 * `--max-semi-space-size`) is left alone, and then there is no hold.
 */

/** V8's default `--semi-space-growth-factor`. */
const DEFAULT_GROWTH = 2;
let held = false;
/** The launcher took the start-up hold: this process is Muster's own to tune. */
let managed = false;

/** Keeps the semi-spaces at their size until `releaseYoungGeneration()`. */
export function holdYoungGeneration(): void {
  if (held || [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes('semi-space'))) return;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  held = true;
  managed = true;
}

/**
 * The same hold from the start of a connection burst (core/connect-burst.ts says why),
 * on `true`. On `false` (the burst is over) it stays until the server is busy with
 * traffic: `BUSY_SCAVENGES_PER_SECOND` collections of the young generation within one
 * second, when a larger one pays for itself; an idle fleet's heartbeats alone never get
 * there. Only in a process whose launcher took the start-up hold (a program embedding
 * Muster keeps V8's own sizing).
 */
export function holdDuringBurst(on: boolean): void {
  if (!managed) return;
  if (on) {
    stopBusyWatch();
    holdYoungGeneration();
  } else if (held) {
    releaseWhenBusy();
  }
}

/** Collections of the young generation within one second that end a burst's hold. */
export const BUSY_SCAVENGES_PER_SECOND = 10;

/** Counts scavenges by their start time (ms); pure. */
export class ScavengeRate {
  readonly perSecond: number;
  readonly #times: number[] = [];

  constructor(perSecond = BUSY_SCAVENGES_PER_SECOND) {
    this.perSecond = perSecond;
  }

  /** Counts one at `at`; true when the last `perSecond` of them fell within one second. */
  scavenge(at: number): boolean {
    this.#times.push(at);
    if (this.#times.length > this.perSecond) this.#times.shift();
    return this.#times.length === this.perSecond && at - (this.#times[0] as number) < 1000;
  }
}

let busyWatch: PerformanceObserver | undefined;

function releaseWhenBusy(): void {
  if (busyWatch) return;
  const rate = new ScavengeRate();
  busyWatch = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if ((e as unknown as { detail?: { kind?: number } }).detail?.kind !== constants.NODE_PERFORMANCE_GC_MINOR) continue;
      if (!rate.scavenge(e.startTime)) continue;
      stopBusyWatch();
      releaseYoungGeneration();
      return;
    }
  });
  busyWatch.observe({ entryTypes: ['gc'] });
}

function stopBusyWatch(): void {
  busyWatch?.disconnect();
  busyWatch = undefined;
}

/** Lets the young generation grow as V8 decides again; does nothing without a hold. */
export function releaseYoungGeneration(): void {
  if (!held) return;
  held = false;
  v8.setFlagsFromString(`--semi-space-growth-factor=${DEFAULT_GROWTH}`);
}
