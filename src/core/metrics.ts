import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ConnectionObserver } from './connection.js';

/** The metrics every dialect shares. Dialects register their own on the same registry. */
export class CoreMetrics implements ConnectionObserver {
  readonly registry: Registry;
  readonly connections: Gauge<'dialect'>;
  readonly framesInTotal: Counter<'dialect'>;
  readonly framesOutTotal: Counter<'dialect'>;
  readonly closesTotal: Counter<'dialect' | 'code'>;
  readonly upgradesRefused: Counter<'reason'>;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registry = new Registry();
    this.registry = registry;
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
    this.connections = new Gauge({ name: 'muster_connections', help: 'Open WebSocket connections', labelNames: ['dialect'], registers: [registry] });
    this.framesInTotal = new Counter({ name: 'muster_frames_in_total', help: 'Frames received', labelNames: ['dialect'], registers: [registry] });
    this.framesOutTotal = new Counter({ name: 'muster_frames_out_total', help: 'Frames sent', labelNames: ['dialect'], registers: [registry] });
    this.closesTotal = new Counter({ name: 'muster_closes_total', help: 'Closed connections by close code', labelNames: ['dialect', 'code'], registers: [registry] });
    this.upgradesRefused = new Counter({ name: 'muster_upgrades_refused_total', help: 'WebSocket upgrades refused', labelNames: ['reason'], registers: [registry] });
    this.httpDuration = new Histogram({
      name: 'muster_http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
  }

  // Label lookups cost more than the increment; keep one child per dialect.
  readonly #inChild = new Map<string, { inc(n: number): void }>();
  readonly #outChild = new Map<string, { inc(n: number): void }>();

  framesIn(dialect: string, n: number): void {
    let c = this.#inChild.get(dialect);
    if (!c) this.#inChild.set(dialect, (c = this.framesInTotal.labels(dialect)));
    c.inc(n);
  }
  framesOut(dialect: string, n: number): void {
    let c = this.#outChild.get(dialect);
    if (!c) this.#outChild.set(dialect, (c = this.framesOutTotal.labels(dialect)));
    c.inc(n);
  }
  closed(dialect: string, code: number): void {
    this.closesTotal.inc({ dialect, code: String(code) });
  }
}
