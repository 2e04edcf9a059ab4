/**
 * Rewrites the generated tables of docs/dialects/<name>.md from the protocol modules:
 * every block between `<!-- generated:<table> -->` and `<!-- /generated -->` is
 * replaced by what its renderer gives. `npm run docs:tables` writes the files;
 * `--check` only reports the files that differ (exit 1). test/unit/doc-tables.test.ts
 * fails when a committed doc differs from what this would write.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { busCloseCodes, renderOpcodeTable as busOpcodes } from '../src/protocols/bus/messages.js';
import { clusterioCloseCodes } from '../src/protocols/clusterio/messages.js';
import { discodoCloseCodes, renderClientOpTable, renderServerOpTable } from '../src/protocols/discodo/messages.js';
import { gamelistCloseCodes, renderMessageTable } from '../src/protocols/gamelist/messages.js';
import { renderOpcodeTable as shardingOpcodes, shardingCloseCodes } from '../src/protocols/sharding/messages.js';

interface CloseCodeDoc {
  readonly name: string;
  readonly description: string;
  readonly retryable: boolean;
  /** What a client should do, when "yes"/"no" says too little. */
  readonly retry?: string;
}

/** The close-code table every dialect page carries, one row per code, ascending. */
export function renderCloseCodeTable(table: Readonly<Record<number, CloseCodeDoc>>): string {
  const rows = Object.entries(table)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([code, c]) => `| ${code} | ${c.name} | ${c.description} | ${c.retry ?? (c.retryable ? 'yes' : 'no')} |`);
  return ['| code | name | when | retry? |', '|---|---|---|---|', ...rows].join('\n');
}

/** Each dialect page's generated blocks, by marker name. */
export const TABLES: Readonly<Record<string, Readonly<Record<string, () => string>>>> = {
  bus: { opcodes: busOpcodes, 'close-codes': () => renderCloseCodeTable(busCloseCodes) },
  clusterio: { 'close-codes': () => renderCloseCodeTable(clusterioCloseCodes) },
  discodo: { 'client-ops': renderClientOpTable, 'server-ops': renderServerOpTable, 'close-codes': () => renderCloseCodeTable(discodoCloseCodes) },
  gamelist: { messages: renderMessageTable, 'close-codes': () => renderCloseCodeTable(gamelistCloseCodes) },
  sharding: { opcodes: shardingOpcodes, 'close-codes': () => renderCloseCodeTable(shardingCloseCodes) },
};

const BLOCK = /(<!-- generated:([a-z-]+) -->)[\s\S]*?(<!-- \/generated -->)/g;

/**
 * `text` with every generated block rewritten. Throws on a marker with no renderer,
 * and when a renderer's block is missing from the text (so a deleted marker is noticed).
 */
export function regenerate(dialect: string, text: string): string {
  const renderers = TABLES[dialect];
  if (!renderers) throw new Error(`no tables for dialect "${dialect}"`);
  const seen = new Set<string>();
  const out = text.replace(BLOCK, (_m, open: string, name: string, close: string) => {
    const render = renderers[name];
    if (!render) throw new Error(`docs/dialects/${dialect}.md: no renderer for <!-- generated:${name} -->`);
    seen.add(name);
    return `${open}\n${render()}\n${close}`;
  });
  for (const name of Object.keys(renderers)) {
    if (!seen.has(name)) throw new Error(`docs/dialects/${dialect}.md: missing <!-- generated:${name} --> … <!-- /generated -->`);
  }
  return out;
}

export const docPath = (dialect: string): URL => new URL(`../docs/dialects/${dialect}.md`, import.meta.url);

function main(): void {
  const check = process.argv.includes('--check');
  const stale: string[] = [];
  for (const dialect of Object.keys(TABLES)) {
    const path = docPath(dialect);
    const before = readFileSync(path, 'utf8');
    const after = regenerate(dialect, before);
    if (after === before) continue;
    stale.push(`docs/dialects/${dialect}.md`);
    if (!check) writeFileSync(path, after);
  }
  if (check && stale.length > 0) {
    console.error(`stale generated tables (run npm run docs:tables): ${stale.join(', ')}`);
    process.exitCode = 1;
  } else if (!check) {
    console.log(stale.length > 0 ? `rewrote ${stale.join(', ')}` : 'every table is up to date');
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
