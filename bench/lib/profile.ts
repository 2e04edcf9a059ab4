import { readFileSync } from 'node:fs';

/**
 * Summarizes a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by
 * source file, as a share of the non-idle time. Used by `--profile` and by
 * `npx tsx bench/profile.ts FILE`.
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

function shortUrl(url: string): string {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('/node_modules/');
  if (nm >= 0) return u.slice(nm + '/node_modules/'.length);
  const src = u.search(/\/(src|bench)\//);
  if (src >= 0) return u.slice(src + 1);
  return u;
}

export interface ProfileSummary {
  /** Non-idle sampled time, ms. */
  busyMs: number;
  byFunction: Array<{ name: string; ms: number; share: number }>;
  byFile: Array<{ name: string; ms: number; share: number }>;
}

/** A measured window, in the profile's clock (CLOCK_MONOTONIC µs). */
export interface ProfileWindow {
  start: number;
  end: number;
}

/**
 * Self time per function and per file. With `windows`, only samples taken inside them
 * count (start-up, module loading and warm-up are left out).
 */
export function analyzeProfile(file: string, top = 25, windows?: ProfileWindow[]): ProfileSummary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  let t = p.startTime;
  for (let i = 0; i < samples.length; i++) {
    const id = samples[i] as number;
    t += deltas[i] ?? 0;
    if (windows && !windows.some((w) => t >= w.start && t <= w.end)) continue;
    // timeDeltas[i] is the time before sample i; attribute the next delta to this sample.
    const dt = (deltas[i + 1] ?? deltas[i] ?? 0) / 1000;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  let busy = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const name = n.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') continue;
    busy += ms;
    const url = shortUrl(n.callFrame.url);
    const key = url ? `${name}  ${url}:${n.callFrame.lineNumber + 1}` : name;
    fn.set(key, (fn.get(key) ?? 0) + ms);
    const fileKey = url || name;
    files.set(fileKey, (files.get(fileKey) ?? 0) + ms);
  }
  const rank = (m: Map<string, number>): Array<{ name: string; ms: number; share: number }> =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, ms, share: busy ? ms / busy : 0 }));
  return { busyMs: busy, byFunction: rank(fn), byFile: rank(files) };
}

export function summarizeProfile(file: string, top = 25, windows?: ProfileWindow[]): string {
  const s = analyzeProfile(file, top, windows);
  const scope = windows ? `inside ${windows.length} measured windows` : 'whole run';
  const lines = [`busy (non-idle) ${s.busyMs.toFixed(0)} ms, ${scope}`, '', 'self time by function:'];
  for (const f of s.byFunction) lines.push(`${(f.share * 100).toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(6)} ms  ${f.name}`);
  lines.push('', 'self time by file:');
  for (const f of s.byFile) lines.push(`${(f.share * 100).toFixed(1).padStart(5)}%  ${f.ms.toFixed(0).padStart(6)} ms  ${f.name}`);
  return lines.join('\n');
}
