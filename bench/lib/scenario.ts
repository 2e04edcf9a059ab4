import type { ProcessGroup } from './child.js';
import type { ServerHandle } from './servers.js';
import { IMPL_LABEL, type Impl } from './constants.js';
import { fmt, fmtRatio, median, ratio } from './stats.js';

/**
 * A scenario is one module in bench/scenarios/ exporting a `Scenario`, listed once in
 * bench/scenarios/index.ts. The runner gives it a context (quick mode, repetitions,
 * a process group that is cleaned up whatever happens, a deadline) and writes the
 * tables, verdicts and notes it returns into bench/RESULTS.md.
 */
export interface ScenarioContext {
  /** --quick: one repetition, smaller counts (smoke check only). */
  readonly quick: boolean;
  /** Repetitions per implementation (≥ 3 unless quick). */
  readonly reps: number;
  /** --profile: run the Muster server child under --cpu-prof into this directory. */
  readonly cpuProfDir: string | undefined;
  /**
   * Called at the edges of every measured window with the server measured. When
   * profiling, Muster's windows are recorded so the profile summary covers only them.
   */
  windowEdge(server: ServerHandle, edge: 'start' | 'end'): Promise<void>;
  /** Every process the scenario starts goes through this group. */
  readonly group: ProcessGroup;
  /** Progress line on stderr. */
  progress(msg: string): void;
  /** Milliseconds left before the scenario's hard deadline. */
  timeLeft(): number;
  /** Throws if the deadline has passed (call it inside loops). */
  checkDeadline(): void;
}

export interface Table {
  title: string;
  head: string[];
  rows: string[][];
}

export interface Verdict {
  /** The target, in words. */
  target: string;
  /** true: holds; false: does not; 'no target': reported only; undefined: not measurable in this run. */
  holds: boolean | 'no target' | undefined;
  /** The numbers behind the verdict. */
  detail: string;
}

export interface ScenarioResult {
  tables: Table[];
  verdicts: Verdict[];
  notes: string[];
}

export interface Scenario {
  readonly id: string;
  /** Another name `npm run bench -- NAME` accepts (e.g. `junk`). */
  readonly alias?: string;
  readonly title: string;
  /** One paragraph: what is measured and how (goes into RESULTS.md). */
  readonly method: string;
  /** Hard time budget in ms (the issue asks for under a minute). */
  readonly budgetMs: number;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

/** Samples of one metric, per implementation, one value per repetition. */
export type Samples = Partial<Record<Impl, number[]>>;

export interface MetricSpec {
  name: string;
  /** Which direction is better, for the reader. */
  better: 'lower' | 'higher';
  samples: Samples;
}

/** Adds one repetition's value. */
export function record(s: Samples, impl: Impl, value: number): void {
  (s[impl] ??= []).push(value);
}

export function med(s: Samples, impl: Impl): number {
  return median(s[impl] ?? []);
}

/**
 * A comparison table: one row per metric, Muster first, then each peer with the
 * ratio Muster ÷ peer. Medians over the repetitions; every repetition is listed in
 * the last column so the spread is visible.
 */
export function compareTable(title: string, impls: Impl[], metrics: MetricSpec[]): Table {
  const [first, ...peers] = impls;
  if (!first) throw new Error('compareTable needs at least one implementation');
  const head = ['metric', IMPL_LABEL[first]];
  for (const p of peers) head.push(IMPL_LABEL[p], `${IMPL_LABEL[first]} ÷ ${IMPL_LABEL[p]}`);
  head.push('runs (in order of the implementations)');
  const rows = metrics.map((m) => {
    const base = med(m.samples, first);
    const row = [`${m.name} (${m.better} is better)`, fmt(base)];
    for (const p of peers) {
      const v = med(m.samples, p);
      row.push(fmt(v), fmtRatio(ratio(base, v)));
    }
    row.push(impls.map((i) => (m.samples[i] ?? []).map((x) => fmt(x)).join(' / ') || 'n/a').join(' · '));
    return row;
  });
  return { title, head, rows };
}

export function renderTable(t: Table): string {
  const esc = (s: string): string => s.replaceAll('|', '\\|');
  const lines = [`| ${t.head.map(esc).join(' | ')} |`, `|${t.head.map(() => '---').join('|')}|`];
  for (const r of t.rows) lines.push(`| ${r.map(esc).join(' | ')} |`);
  return `**${t.title}**\n\n${lines.join('\n')}\n`;
}
