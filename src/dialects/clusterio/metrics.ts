/**
 * Metrics: the dialect's own (peers online, instances by status, resumes, plugin
 * events, forwarded requests), and the slaves' statistics, asked for at each scrape (the
 * world's `scrape`) and published with a slave_id label.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ClusterioWorld, SlaveMetrics } from './world/state.js';

export interface DialectMetrics {
  resumes: Counter;
  invalidations: Counter;
  pluginEvents: Counter<'type' | 'action'>;
  forwarded: Counter<'type'>;
}

export interface SlaveFamily {
  name: string;
  help: string;
  type: string;
  aggregator: 'sum';
  values: Array<{ labels: Record<string, string>; value: number }>;
  get(): Promise<{ name: string; help: string; type: string; aggregator: 'sum'; values: SlaveFamily['values'] }>;
}

export function createMetrics(registry: Registry, world: () => ClusterioWorld): DialectMetrics {
  const registers = [registry];
  new Gauge({
    name: 'muster_clusterio_slaves_connected',
    help: 'Clusterio slaves online (connected, or a session within its resume window)',
    registers,
    collect() {
      this.set(world().slaves.size);
    },
  });
  new Gauge({
    name: 'muster_clusterio_controls_connected',
    help: 'Clusterio controls online',
    registers,
    collect() {
      this.set(world().controls.size);
    },
  });
  new Gauge({
    name: 'muster_clusterio_instances',
    help: 'Clusterio instances by last reported status ("unknown" until a slave reports one)',
    labelNames: ['status'],
    registers,
    collect() {
      this.reset();
      const by = new Map<string, number>();
      for (const rec of world().registry.instances.values()) by.set(rec.status ?? 'unknown', (by.get(rec.status ?? 'unknown') ?? 0) + 1);
      for (const [status, n] of by) this.set({ status }, n);
    },
  });
  return {
    resumes: new Counter({ name: 'muster_clusterio_resumes_total', help: 'Sessions resumed', registers }),
    invalidations: new Counter({ name: 'muster_clusterio_invalidations_total', help: 'Resumes answered with invalidate', registers }),
    pluginEvents: new Counter({
      name: 'muster_clusterio_plugin_events_total',
      help: 'Plugin events received, by type and what was done (broadcast or dropped)',
      labelNames: ['type', 'action'],
      registers,
    }),
    forwarded: new Counter({
      name: 'muster_clusterio_forwarded_requests_total',
      help: 'Control requests forwarded to slaves, by type',
      labelNames: ['type'],
      registers,
    }),
  };
}

/** Publishes the slaves' answers to a scrape with a slave_id label; families no slave reported go. */
export function publishSlaveMetrics(registry: Registry, families: Map<string, SlaveFamily>, answers: readonly SlaveMetrics[]): void {
  const merged = new Map<string, { help: string; type: string; values: SlaveFamily['values'] }>();
  for (const a of answers) {
    for (const r of a.results) mergeResult(merged, r, a.slaveId);
  }
  for (const name of [...families.keys()]) {
    if (!merged.has(name)) {
      registry.removeSingleMetric(name);
      families.delete(name);
    }
  }
  for (const [name, m] of merged) {
    let fam = families.get(name);
    if (!fam) {
      if (registry.getSingleMetric(name)) continue; // never shadow Muster's own metrics
      const f: SlaveFamily = {
        name,
        help: m.help,
        type: m.type,
        aggregator: 'sum',
        values: [],
        get: async () => ({ name: f.name, help: f.help, type: f.type, aggregator: 'sum', values: f.values }),
      };
      fam = f;
      families.set(name, f);
      registry.registerMetric(f as unknown as Parameters<Registry['registerMetric']>[0]);
    }
    fam.help = m.help;
    fam.type = m.type;
    fam.values = m.values;
  }
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_PAIR = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** Merges one serialized prometheus result from a slave (the 2020 lib/prometheus format). */
function mergeResult(
  into: Map<string, { help: string; type: string; values: SlaveFamily['values'] }>,
  r: unknown,
  slaveId: string,
): void {
  if (typeof r !== 'object' || r === null) return;
  const { metric, samples } = r as { metric?: { name?: unknown; help?: unknown; type?: unknown }; samples?: unknown };
  if (!metric || typeof metric.name !== 'string' || !METRIC_NAME.test(metric.name) || !Array.isArray(samples)) return;
  let fam = into.get(metric.name);
  if (!fam) {
    fam = {
      help: typeof metric.help === 'string' ? metric.help : metric.name,
      type: typeof metric.type === 'string' && TYPES.has(metric.type) ? metric.type : 'untyped',
      values: [],
    };
    into.set(metric.name, fam);
  }
  for (const s of samples) {
    if (!Array.isArray(s) || typeof s[0] !== 'string' || typeof s[1] !== 'number') continue;
    const labels: Record<string, string> = {};
    for (const m of s[0].matchAll(LABEL_PAIR)) {
      labels[m[1] as string] = (m[2] as string).replace(/\\(["\\n])/g, (_x, c: string) => (c === 'n' ? '\n' : c));
    }
    labels.slave_id ??= slaveId;
    fam.values.push({ labels, value: s[1] });
  }
}
