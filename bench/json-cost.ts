/**
 * `npx tsx bench/json-cost.ts [--quick]`: what parsing one frame costs, per KiB of
 * JSON text, for the parsers the codecs choose between (src/protocols/json.ts):
 *
 * - `JSON.parse` (the native parser; rounds numbers beyond 2^53);
 * - `scanJson` (the depth and number-exactness pass every frame gets first);
 * - lossless-json `parse` (the big-int-safe parser; keeps every number's digits);
 * - `scan + parseJson`: what a codec pays (src/protocols/json.ts): the scan, then
 *   `JSON.parse`, with the numbers a JS number cannot hold marked as strings first and
 *   turned into LosslessNumbers after.
 * - `scan + choose`: the scan, then `JSON.parse` when every number is exact, else
 *   lossless-json for the whole frame (the simpler rule, for comparison).
 *
 * Prints a table on stdout. Numbers only: nothing here is asserted anywhere.
 */
import { LosslessNumber, parse as losslessParse } from 'lossless-json';
import { parseJson, scanJson } from '../src/protocols/json.js';

interface Shape {
  name: string;
  make(bytes: number): string;
}

/** A gamelist REGISTER whose description fills the frame (mostly string). */
const register: Shape = {
  name: 'gamelist REGISTER, long text',
  make: (bytes) => {
    const head = { metadata: { type: 1, id: 1 }, info: { name: 'n', desc: '', port: 7777, map: 'm', playlist: 'p', curPlayers: 1, maxPlayers: 16, gameState: 0 }, regToken: 'x' };
    const base = JSON.stringify(head).length;
    head.info.desc = 'lorem ipsum dolor sit amet '.repeat(Math.ceil(bytes / 27)).slice(0, Math.max(0, bytes - base));
    return JSON.stringify(head);
  },
};

/** The same REGISTER with an INT64 id beyond 2^53: one number forces the big-int-safe path. */
const registerBigId: Shape = {
  name: 'gamelist REGISTER, long text, INT64 id',
  make: (bytes) => register.make(bytes).replace('"id":1', '"id":9223372036854775807'),
};

/** An object full of small integers and short keys (number-heavy, all exact). */
const smallNumbers: Shape = {
  name: 'objects of small integers',
  make: (bytes) => {
    const items: string[] = [];
    let len = 2;
    for (let i = 0; len < bytes; i++) {
      const s = `{"id":${i},"x":${i * 7},"y":${i * 13},"ok":true}`;
      items.push(s);
      len += s.length + 1;
    }
    return `[${items.join(',')}]`;
  },
};

/** Discord snowflakes (19-digit numbers): the lossless parser is required. */
const snowflakes: Shape = {
  name: 'objects with snowflakes (> 2^53)',
  make: (bytes) => {
    const items: string[] = [];
    let len = 2;
    for (let i = 0; len < bytes; i++) {
      const s = `{"guild_id":${870000000000000000n + BigInt(i)},"name":"g${i}"}`;
      items.push(s);
      len += s.length + 1;
    }
    return `[${items.join(',')}]`;
  },
};

const PARSERS: Array<{ name: string; run(text: string): unknown }> = [
  { name: 'JSON.parse', run: (t) => JSON.parse(t) },
  { name: 'scanJson', run: (t) => scanJson(t) },
  { name: 'lossless-json', run: (t) => losslessParse(t) },
  { name: 'scan + parseJson', run: (t) => parseJson(t, scanJson(t), losslessParse, (s) => new LosslessNumber(s)) },
  { name: 'scan + choose', run: (t) => (scanJson(t).exact ? JSON.parse(t) : losslessParse(t)) },
];

/** Median µs per call over `reps` timed batches of about `budgetMs` each. */
function measure(fn: () => unknown, budgetMs: number, reps: number): number {
  let n = 1;
  for (;;) {
    const t = performance.now();
    for (let i = 0; i < n; i++) fn();
    const ms = performance.now() - t;
    if (ms >= budgetMs / 4) break;
    n *= 2;
  }
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) fn();
    samples.push(((performance.now() - t) * 1000) / n);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] as number;
}

const quick = process.argv.includes('--quick');
const sizes = [16 * 1024, 1024 * 1024];
const rows: string[][] = [];
for (const shape of [register, registerBigId, smallNumbers, snowflakes]) {
  for (const size of sizes) {
    const text = shape.make(size);
    const kib = text.length / 1024;
    const cells = [shape.name, `${Math.round(kib)} KiB`];
    for (const p of PARSERS) {
      const us = measure(() => p.run(text), quick ? 40 : 200, quick ? 3 : 7);
      cells.push((us / kib).toFixed(2));
    }
    rows.push(cells);
  }
}
const head = ['frame', 'size', ...PARSERS.map((p) => `${p.name} µs/KiB`)];
const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
process.stdout.write(`Node ${process.version}, one core, median of timed batches\n\n${lines.join('\n')}\n`);
