/**
 * `npm run bench [-- P1 P2 …] [--quick] [--profile] [--reps N] [--out FILE]`
 *
 * Runs the scenarios (all by default) with their peers side by side, shows progress on
 * stderr, and writes a Markdown report: bench/RESULTS.md for a full run, otherwise
 * bench/.tmp/RESULTS.partial.md (so a smoke check never overwrites the committed
 * results) unless --out says where.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH_DIR, ProcessGroup, TMP_DIR, useServerBuild } from './lib/child.js';
import { summarizeProfile } from './lib/profile.js';
import { loadAverage, waitQuiet } from './lib/quiet.js';
import { renderTable, type Scenario, type ScenarioContext, type ScenarioResult, type Verdict } from './lib/scenario.js';
import { buildMuster, buildServers } from './lib/build.js';
import { natsVersion, useMusterBuild } from './lib/servers.js';
import { SCENARIOS } from './scenarios/index.js';

interface Options {
  ids: string[];
  quick: boolean;
  profile: boolean;
  reps: number | undefined;
  out: string | undefined;
  wait: boolean;
  /** Re-render the report from the last full run's saved numbers (new ANALYSIS.md). */
  render: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { ids: [], quick: false, profile: false, reps: undefined, out: undefined, wait: true, render: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--quick') o.quick = true;
    else if (a === '--profile') o.profile = true;
    else if (a === '--reps') o.reps = Number(argv[++i]);
    else if (a === '--out') o.out = argv[++i];
    else if (a === '--no-wait') o.wait = false;
    else if (a === '--render') o.render = true;
    else if (a === '--help' || a === '-h') {
      console.error('usage: npm run bench [-- P1 P2 … | cluster-idle | cross | leader | junk] [--quick] [--profile] [--reps N] [--out FILE] [--no-wait] [--render]');
      process.exit(0);
    } else if (/^P\d+$/i.test(a)) o.ids.push(a.toUpperCase());
    else if (SCENARIOS.some((s) => s.alias === a.toLowerCase())) o.ids.push(SCENARIOS.find((s) => s.alias === a.toLowerCase())?.id ?? a);
    else {
      console.error(`unknown argument ${a}`);
      process.exit(2);
    }
  }
  if (o.reps !== undefined && !(Number.isInteger(o.reps) && o.reps >= 1)) {
    console.error('--reps needs a positive integer');
    process.exit(2);
  }
  return o;
}

const started = performance.now();
function progress(msg: string): void {
  const s = ((performance.now() - started) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s] ${msg}\n`);
}

class DeadlineError extends Error {}

interface Outcome {
  scenario: Scenario;
  result: ScenarioResult | undefined;
  error: string | undefined;
  seconds: number;
  /** Share of the machine busy just before the scenario started (other processes). */
  busyBefore: number;
  loadAfter: string;
}

async function runScenario(s: Scenario, opts: Options, cpuProfDir: string | undefined): Promise<Outcome> {
  const busyBefore = opts.wait ? await waitQuiet(opts.quick ? 10_000 : 30_000, 0.15, progress) : Number.NaN;
  const group = new ProcessGroup();
  current = group;
  const t0 = performance.now();
  const deadline = t0 + s.budgetMs;
  const windows: Array<{ start: number; end: number }> = [];
  let openAt: number | undefined;
  const ctx: ScenarioContext = {
    quick: opts.quick,
    reps: opts.reps ?? (opts.quick ? 1 : 3),
    cpuProfDir: cpuProfDir ? path.join(cpuProfDir, s.id) : undefined,
    group,
    progress,
    windowEdge: async (server, edge) => {
      if (!cpuProfDir || server.impl !== 'muster' || !server.child) return;
      const t = await server.child.call<number>('mark');
      if (edge === 'start') openAt = t;
      else if (openAt !== undefined) {
        windows.push({ start: openAt, end: t });
        openAt = undefined;
      }
    },
    timeLeft: () => deadline - performance.now(),
    checkDeadline: () => {
      if (performance.now() > deadline) throw new DeadlineError(`${s.id} ran past its ${s.budgetMs / 1000} s budget`);
    },
  };
  progress(`${s.id}: ${s.title}`);
  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(`${s.id} ran past its ${s.budgetMs / 1000} s budget`)), s.budgetMs + 2000);
  });
  let result: ScenarioResult | undefined;
  let error: string | undefined;
  try {
    const running = s.run(ctx);
    // If the watchdog wins, the scenario's own promise still settles later: keep that
    // from becoming an unhandled rejection (its processes are killed below).
    running.catch(() => undefined);
    result = await Promise.race([running, watchdog]);
  } catch (err) {
    error = err instanceof Error ? err.message : String(err);
    progress(`${s.id} FAILED: ${error}`);
  } finally {
    clearTimeout(timer);
    await group.closeAll();
    current = undefined;
  }
  if (ctx.cpuProfDir && windows.length) {
    mkdirSync(ctx.cpuProfDir, { recursive: true });
    writeFileSync(path.join(ctx.cpuProfDir, 'windows.json'), JSON.stringify(windows));
  }
  const seconds = (performance.now() - t0) / 1000;
  progress(`${s.id} done in ${seconds.toFixed(1)} s`);
  return { scenario: s, result, error, seconds, busyBefore, loadAfter: loadAverage() };
}

let current: ProcessGroup | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    current?.killAllNow();
    process.exit(130);
  });
}

function pkgVersion(name: string): string {
  try {
    const p = path.join(BENCH_DIR, '..', 'node_modules', name, 'package.json');
    return (JSON.parse(readFileSync(p, 'utf8')) as { version: string }).version;
  } catch {
    return 'n/a';
  }
}

function machine(): string[][] {
  const cpus = os.cpus();
  return [
    ['CPU', cpus[0]?.model ?? 'unknown'],
    ['cores', String(cpus.length)],
    ['memory', `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`],
    ['OS', `${os.type()} ${os.release()}`],
    ['Node', process.version],
    ['peers', `ws ${pkgVersion('ws')}, socket.io ${pkgVersion('socket.io')} / socket.io-client ${pkgVersion('socket.io-client')}, nats.ws ${pkgVersion('nats.ws')}, ${natsVersion()}`],
  ];
}

function verdictCell(v: Verdict): string {
  if (v.holds === 'no target') return 'measured (no numeric target)';
  return v.holds === undefined ? 'not measured' : v.holds ? '**holds**' : '**does not hold**';
}

/** What a run leaves in bench/.tmp/last-run.json, so the report can be rendered again. */
interface SavedRun {
  date: string;
  totalSeconds: number;
  machine: string[][];
  opts: Options;
  outcomes: Array<Omit<Outcome, 'scenario'> & { id: string }>;
}
const LAST_RUN = path.join(TMP_DIR, 'last-run.json');

function report(outcomes: Outcome[], opts: Options, totalSeconds: number, when = new Date(), machineRows = machine()): string {
  const date = when.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
  const cmd = `npm run bench${opts.ids.length || opts.quick || opts.reps ? ` -- ${[...opts.ids, ...(opts.quick ? ['--quick'] : []), ...(opts.reps ? ['--reps', String(opts.reps)] : [])].join(' ')}` : ''}`;
  const out: string[] = [];
  out.push('# Muster benchmark results', '');
  out.push(`Written by \`${cmd}\` on ${date}, in ${totalSeconds.toFixed(0)} s. How to run and what each scenario measures: [README.md](README.md).`, '');
  out.push('## Machine', '', '| | |', '|---|---|');
  for (const [k, v] of machineRows) out.push(`| ${k} | ${v} |`);
  out.push('');
  out.push('## Targets (issue 7)', '', '| target | verdict | numbers (medians) |', '|---|---|---|');
  for (const o of outcomes) {
    if (!o.result) {
      out.push(`| ${o.scenario.id}: ${o.scenario.title} | **failed** | ${o.error ?? ''} |`);
      continue;
    }
    for (const v of o.result.verdicts) out.push(`| ${v.target} | ${verdictCell(v)} | ${v.detail} |`);
  }
  out.push('');
  for (const o of outcomes) {
    out.push(`## ${o.scenario.id}: ${o.scenario.title}`, '');
    out.push(o.scenario.method, '');
    if (!o.result) {
      out.push(`**Failed:** ${o.error ?? 'unknown error'}`, '');
      continue;
    }
    for (const t of o.result.tables) out.push(renderTable(t));
    if (o.result.notes.length) {
      for (const n of o.result.notes) out.push(`- ${n}`);
      out.push('');
    }
    const busy = Number.isFinite(o.busyBefore) ? `${(o.busyBefore * 100).toFixed(0)}% of the CPU busy with other processes just before it started` : 'no wait for a quiet machine';
    out.push(`(${o.seconds.toFixed(1)} s; ${busy}; load average ${o.loadAfter} at the end)`, '');
  }
  const analysis = path.join(BENCH_DIR, 'ANALYSIS.md');
  if (existsSync(analysis)) out.push(readFileSync(analysis, 'utf8').trim(), '');
  return out.join('\n');
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.render) {
    const saved = JSON.parse(readFileSync(LAST_RUN, 'utf8')) as SavedRun;
    const outcomes: Outcome[] = saved.outcomes.map((o) => {
      const scenario = SCENARIOS.find((s) => s.id === o.id);
      if (!scenario) throw new Error(`unknown scenario ${o.id} in ${LAST_RUN}`);
      return { ...o, scenario };
    });
    const file = opts.out ?? path.join(BENCH_DIR, 'RESULTS.md');
    writeFileSync(file, report(outcomes, saved.opts, saved.totalSeconds, new Date(saved.date), saved.machine));
    progress(`re-rendered ${path.relative(process.cwd(), file)} from ${path.relative(process.cwd(), LAST_RUN)}`);
    return;
  }
  const known = new Set(SCENARIOS.map((s) => s.id));
  for (const id of opts.ids) {
    if (!known.has(id)) {
      console.error(`unknown scenario ${id}; known: ${[...known].join(', ')}`);
      process.exit(2);
    }
  }
  const chosen = opts.ids.length ? SCENARIOS.filter((s) => opts.ids.includes(s.id)) : SCENARIOS;
  mkdirSync(TMP_DIR, { recursive: true });
  const cpuProfDir = opts.profile ? path.join(TMP_DIR, 'profiles', String(Date.now())) : undefined;
  progress(`bench: ${chosen.map((s) => s.id).join(' ')}${opts.quick ? ' (quick)' : ''}${cpuProfDir ? ` (profiling Muster into ${cpuProfDir})` : ''}`);

  const t = performance.now();
  useMusterBuild(buildMuster());
  useServerBuild(buildServers());
  progress(`transpiled src/ to plain JS for the Muster server in ${((performance.now() - t) / 1000).toFixed(1)} s`);

  const outcomes: Outcome[] = [];
  for (const s of chosen) outcomes.push(await runScenario(s, opts, cpuProfDir));
  const total = (performance.now() - started) / 1000;

  const full = opts.ids.length === 0 && !opts.quick && !opts.profile && opts.reps === undefined;
  const file = opts.out ?? (full ? path.join(BENCH_DIR, 'RESULTS.md') : path.join(TMP_DIR, 'RESULTS.partial.md'));
  const when = new Date();
  const machineRows = machine();
  writeFileSync(file, report(outcomes, opts, total, when, machineRows));
  if (full) {
    const saved: SavedRun = {
      date: when.toISOString(),
      totalSeconds: total,
      machine: machineRows,
      opts,
      outcomes: outcomes.map(({ scenario, ...o }) => ({ ...o, id: scenario.id })),
    };
    writeFileSync(LAST_RUN, JSON.stringify(saved, null, 1));
  }
  progress(`wrote ${path.relative(process.cwd(), file)}`);

  if (cpuProfDir && existsSync(cpuProfDir)) {
    for (const dir of readdirSync(cpuProfDir)) {
      const winFile = path.join(cpuProfDir, dir, 'windows.json');
      const windows = existsSync(winFile) ? (JSON.parse(readFileSync(winFile, 'utf8')) as Array<{ start: number; end: number }>) : undefined;
      for (const f of readdirSync(path.join(cpuProfDir, dir)).filter((n) => n.endsWith('.cpuprofile'))) {
        const full = path.join(cpuProfDir, dir, f);
        const text = summarizeProfile(full, 25, windows);
        writeFileSync(`${full}.txt`, text);
        process.stderr.write(`\n${dir} ${f}\n${text}\n`);
      }
    }
  }
  const failed = outcomes.filter((o) => o.error !== undefined).length;
  process.exitCode = failed ? 1 : 0;
}

await main();
