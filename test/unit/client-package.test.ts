import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'packages/client/package.json'), 'utf8')) as {
  name: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
};
const rootPkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; workspaces: string[] };

/** Every .ts file under `dir` (relative to the repo root). */
function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(dir, f));
}

/** The module specifiers a file imports or re-exports (static, and dynamic with a literal). */
function specifiers(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^;]*?\bfrom\s+'([^']+)'/gms)) out.push(m[1] as string);
  for (const m of text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) out.push(m[1] as string);
  return out;
}

describe('the client package (@muster/client)', () => {
  it('is a workspace of this repo that depends on no server library', () => {
    expect(rootPkg.workspaces).toContain('packages/client');
    expect(Object.keys(pkg.dependencies ?? {}).sort()).toEqual(['@sinclair/typebox', 'lossless-json', 'ws']);
    for (const server of ['better-sqlite3', 'fastify', 'pino', 'prom-client', 'commander', 'jose', 'yaml']) {
      expect(pkg.dependencies?.[server]).toBeUndefined();
    }
    expect(pkg.peerDependencies?.['@discordjs/ws']).toBeDefined();
    expect(pkg.peerDependenciesMeta?.['@discordjs/ws']?.optional).toBe(true);
    // The same ranges as the server's, so one lockfile serves both.
    for (const [name, range] of Object.entries(pkg.dependencies ?? {})) expect(rootPkg.dependencies[name]).toBe(range);
  });

  it('compiles only src/client and src/protocols, which import nothing else but its dependencies and node built-ins', () => {
    const files = [...sources('src/client'), ...sources('src/protocols')];
    expect(files.length).toBeGreaterThan(10);
    const allowed = new Set([...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.peerDependencies ?? {})]);
    const bad: string[] = [];
    for (const file of files) {
      for (const spec of specifiers(file)) {
        if (spec.startsWith('.')) {
          const target = join(file, '..', spec).split('\\').join('/');
          if (!target.startsWith('src/client/') && !target.startsWith('src/protocols/')) bad.push(`${file} → ${spec}`);
          continue;
        }
        if (spec.startsWith('node:') || builtinModules.includes(spec)) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] as string);
        if (!allowed.has(name)) bad.push(`${file} → ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('the build includes exactly those two folders', () => {
    const tsconfig = JSON.parse(readFileSync(join(root, 'packages/client/tsconfig.json'), 'utf8')) as { include: string[] };
    expect(tsconfig.include.sort()).toEqual(['../../src/client', '../../src/protocols']);
  });
});
