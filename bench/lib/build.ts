import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { BENCH_DIR } from './child.js';

/**
 * Muster is measured as it ships: plain JavaScript, as `tsc` emits it. Running src/
 * through tsx would not be the same program: tsx's esbuild transform keeps function
 * names (`__name(fn, "onMessage")`), which gives every such closure its own property
 * store, about 0.5 KiB per bus connection in a heap snapshot. So the runner transpiles
 * src/ file by file (no type check, a few seconds) and the Muster server child imports
 * from there. The output goes to node_modules/.cache/muster-bench/src, the usual place
 * for tool caches: packages resolve from it as from src/, and linters and git skip it.
 */
/** Where the plain-JS transpiles go. */
const CACHE_DIR = path.resolve(BENCH_DIR, '..', 'node_modules', '.cache', 'muster-bench');

export function buildMuster(): string {
  const srcDir = path.resolve(BENCH_DIR, '..', 'src');
  const outDir = path.resolve(CACHE_DIR, 'src');
  transpileTree(srcDir, outDir);
  return outDir;
}

/**
 * The server children themselves (bench/servers and the bench/lib modules they import),
 * as plain JS beside the Muster transpile, for every implementation alike. A child run
 * through tsx's loader carries the loader's worker thread and its caches for each module
 * it loads: a few MiB of RSS for the one-file relay, far more for a server of a hundred
 * modules, so the baseline RSS would measure tsx, not the server (bench/ANALYSIS.md,
 * issue 12). Returns the folder that mirrors bench/.
 */
export function buildServers(): string {
  const outDir = path.resolve(CACHE_DIR, 'bench');
  rmSync(outDir, { recursive: true, force: true });
  for (const sub of ['servers', 'lib']) transpileTree(path.join(BENCH_DIR, sub), path.join(outDir, sub), false);
  writeFileSync(path.join(outDir, 'package.json'), '{"type":"module"}\n');
  return outDir;
}

function transpileTree(srcDir: string, outDir: string, clean = true): void {
  if (clean) rmSync(outDir, { recursive: true, force: true });
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) return walk(p);
      return e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [p] : [];
    });
  for (const file of walk(srcDir)) {
    const out = ts.transpileModule(readFileSync(file, 'utf8'), {
      fileName: file,
      compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, esModuleInterop: true, sourceMap: false },
    });
    const dest = path.join(outDir, path.relative(srcDir, file)).replace(/\.ts$/, '.js');
    mkdirSync(path.dirname(dest), { recursive: true });
    writeFileSync(dest, out.outputText);
  }
  // Mark the folder as ESM, as the project's package.json does for dist/.
  writeFileSync(path.join(outDir, 'package.json'), '{"type":"module"}\n');
}
