import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/**
 * The built CLI, by absolute path, for tests that run Muster as a process. Nothing
 * here depends on the working directory or on anything installed outside the clone:
 * `npm test` builds dist/ first; a test file run on its own builds it with the
 * clone's own TypeScript compiler when it is missing.
 */
export const ROOT = resolve(import.meta.dirname, '../..');
export const CLI = join(ROOT, 'dist/cli/main.js');

export function ensureBuilt(): void {
  if (existsSync(CLI)) return;
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('build failed');
}
