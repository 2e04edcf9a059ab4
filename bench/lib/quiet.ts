import { readFileSync } from 'node:fs';
import os from 'node:os';
import { sleep } from './ipc.js';

/**
 * The bench shares the machine with whatever else runs on it (builds, test suites).
 * Before each scenario the runner waits, bounded, until the machine is quiet, and the
 * report records how busy it was, so a contaminated run can be told apart.
 */
function cpuTimes(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

/** Share of all cores busy over the next `ms` (0..1). */
export async function busyShare(ms = 1000): Promise<number> {
  const a = cpuTimes();
  await sleep(ms);
  const b = cpuTimes();
  return b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0;
}

/**
 * Waits until less than `threshold` of the machine's CPU is busy for two consecutive
 * seconds, at most `maxMs`. Returns the last busy share seen.
 */
export async function waitQuiet(maxMs: number, threshold: number, progress: (msg: string) => void): Promise<number> {
  const until = performance.now() + maxMs;
  let calm = 0;
  let last = 1;
  let told = false;
  while (performance.now() < until) {
    last = await busyShare(1000);
    if (last < threshold) {
      if (++calm >= 2) return last;
    } else {
      calm = 0;
      if (!told) {
        progress(`waiting for the machine to be quiet (${(last * 100).toFixed(0)}% busy; other processes are running; at most ${Math.round(maxMs / 1000)} s)`);
        told = true;
      }
    }
  }
  progress(`machine still ${(last * 100).toFixed(0)}% busy; going on anyway (the report says so)`);
  return last;
}

export function loadAverage(): string {
  return os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' / ');
}
