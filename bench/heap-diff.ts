/**
 * Where an idle connection's heap goes (P3), by object and what holds it.
 *
 *   npx tsx bench/heap-diff.ts [--n 2000] [--impls muster,ws] [--depth 2] [--top 40]
 *
 * Not part of `npm run bench`. For each implementation, a fresh server started as P3
 * starts it (bus only, memory store, 5 s heartbeats; the relay with 5 s pings), a forced
 * GC and a heap snapshot, then `--n` minimal peers from 4 client processes (as P3's),
 * held 5.5 s (every peer has answered a heartbeat), a forced GC and a second snapshot.
 * It prints the difference per connection: bytes and objects, by kind and name, with the
 * object's first strong retainer (`--depth 2`: and that one's), largest first; compiled
 * code is left out of the total (it is warm-up, not per connection). Snapshots stay in
 * bench/.tmp/heap/ for DevTools.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { buildMuster, buildServers } from './lib/build.js';
import { ProcessGroup, TMP_DIR, useServerBuild } from './lib/child.js';
import type { Impl } from './lib/constants.js';
import { sleep } from './lib/ipc.js';
import { startServer, stopServer, useMusterBuild } from './lib/servers.js';

const CLIENT_PROCS = 4;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? (process.argv[i + 1] ?? fallback) : fallback;
}

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** Bytes and count per label ("kind name <- retainer.edge"). */
function tally(file: string, depth: number): Map<string, { n: number; bytes: number }> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const { node_fields: nf, node_types: [types], edge_fields: ef, edge_types: [etypes] } = s.snapshot.meta;
  const W = nf.length;
  const [iT, iN, iS, iE] = ['type', 'name', 'self_size', 'edge_count'].map((f) => nf.indexOf(f)) as [number, number, number, number];
  const EW = ef.length;
  const [eT, eN, eTo] = ['type', 'name_or_index', 'to_node'].map((f) => ef.indexOf(f)) as [number, number, number];
  const { nodes, edges, strings } = s;
  const count = nodes.length / W;
  const kind = (i: number): string => {
    const t = types[nodes[i * W + iT] as number] as string;
    const name = (strings[nodes[i * W + iN] as number] as string).slice(0, 40);
    if (t.endsWith('string')) return 'string';
    if (t === 'number') return 'heap number';
    if (t === 'code' || t === 'object shape') return t;
    return `${t} ${name}`;
  };
  // The first strong retainer of each node, and the edge's name.
  const by = new Int32Array(count).fill(-1);
  const via = new Array<string>(count);
  let e = 0;
  for (let i = 0; i < count; i++) {
    const n = nodes[i * W + iE] as number;
    for (let j = 0; j < n; j++, e += EW) {
      const t = etypes[edges[e + eT] as number];
      if (t === 'weak' || t === 'shortcut') continue;
      const to = (edges[e + eTo] as number) / W;
      if (by[to] !== -1) continue;
      by[to] = i;
      const name = t === 'element' || t === 'hidden' ? '' : String(strings[edges[e + eN] as number]);
      via[to] = /^\d*$/.test(name) ? '[]' : name.slice(0, 30);
    }
  }
  const out = new Map<string, { n: number; bytes: number }>();
  for (let i = 0; i < count; i++) {
    let label = kind(i);
    if (label.startsWith('synthetic')) continue;
    for (let d = 0, x = i; d < depth && by[x] !== -1; d++, x = by[x] as number) label += ` <- ${kind(by[x] as number)}.${via[x]}`;
    const a = out.get(label) ?? { n: 0, bytes: 0 };
    a.n++;
    a.bytes += nodes[i * W + iS] as number;
    out.set(label, a);
  }
  return out;
}

const n = Number(arg('n', '2000'));
const impls = arg('impls', 'muster,ws').split(',') as Impl[];
const depth = Number(arg('depth', '1'));
const top = Number(arg('top', '40'));
const dir = path.join(TMP_DIR, 'heap');
mkdirSync(dir, { recursive: true });
useMusterBuild(buildMuster());
useServerBuild(buildServers());

const group = new ProcessGroup();
try {
  const clients = await Promise.all(
    Array.from({ length: CLIENT_PROCS }, (_, i) => group.start({ name: `heap-client${i}`, script: 'clients/idle.ts' }).then((r) => r.child)),
  );
  for (const impl of impls) {
    const server = await startServer(group, impl, { bus: { heartbeatInterval: 5000 }, pingMs: 5000, label: `heap-${impl}` });
    const child = server.child;
    if (!child) throw new Error(`${impl}: no Node server`);
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const before = path.join(dir, `${stamp}-${impl}-before.heapsnapshot`);
    const after = path.join(dir, `${stamp}-${impl}-after.heapsnapshot`);
    await sleep(300);
    await child.call('gc');
    await child.call('snapshot', before, 120_000);
    const share = Math.floor(n / CLIENT_PROCS);
    await Promise.all(clients.map((c) => c.call('connect', { impl, url: server.url, n: share, concurrency: 100 }, 90_000)));
    await sleep(5500);
    await child.call('gc');
    await child.call('snapshot', after, 120_000);
    await Promise.all(clients.map((c) => c.call('close')));
    await stopServer(group, server);

    const conns = share * CLIENT_PROCS;
    const [a, b] = [tally(before, depth), tally(after, depth)];
    const rows = [...new Set([...a.keys(), ...b.keys()])].map((k) => {
      const x = a.get(k) ?? { n: 0, bytes: 0 };
      const y = b.get(k) ?? { n: 0, bytes: 0 };
      return { k, n: (y.n - x.n) / conns, bytes: (y.bytes - x.bytes) / conns };
    });
    rows.sort((p, q) => Math.abs(q.bytes) - Math.abs(p.bytes));
    const total = rows.reduce((t, r) => t + (r.k.startsWith('code') ? 0 : r.bytes), 0);
    console.log(`\n${impl}: ${conns} connections, ${total.toFixed(0)} B of heap per connection (compiled code left out); ${after}`);
    console.log('   B/conn  objects  what <- held by');
    for (const r of rows.slice(0, top)) console.log(`${r.bytes.toFixed(1).padStart(9)} ${r.n.toFixed(2).padStart(8)}  ${r.k}`);
  }
} finally {
  await group.closeAll();
}
process.exit(0);
