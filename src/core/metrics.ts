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
  readonly upgradesInProgress: Gauge;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  readonly logLinesDropped: Counter;
  readonly instanceInfo: Gauge<'instance_id'>;

  /**
   * `logLinesDropped` reads the log destination's count of dropped lines (0 when there is
   * none); `instanceId` labels `muster_instance_info`.
   */
  constructor(opts: { defaultMetrics?: boolean; logLinesDropped?: () => number; instanceId?: string } = {}) {
    const registry = new Registry();
    this.registry = registry;
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 20 });
    this.instanceInfo = new Gauge({ name: 'muster_instance_info', help: 'Always 1; labelled with this instance\'s id', labelNames: ['instance_id'], registers: [registry] });
    if (opts.instanceId !== undefined) this.instanceInfo.set({ instance_id: opts.instanceId }, 1);
    this.connections = new Gauge({ name: 'muster_connections', help: 'Open WebSocket connections', labelNames: ['dialect'], registers: [registry] });
    // Frame counts are kept in plain numbers and handed to these counters when they are
    // read (collect), see framesIn/framesOut.
    const flushIn = (): void => this.#flush(this.#inPending, this.framesInTotal);
    const flushOut = (): void => this.#flush(this.#outPending, this.framesOutTotal);
    this.framesInTotal = new Counter({ name: 'muster_frames_in_total', help: 'Frames received', labelNames: ['dialect'], registers: [registry], collect: flushIn });
    this.framesOutTotal = new Counter({ name: 'muster_frames_out_total', help: 'Frames sent', labelNames: ['dialect'], registers: [registry], collect: flushOut });
    this.closesTotal = new Counter({ name: 'muster_closes_total', help: 'Closed connections by close code', labelNames: ['dialect', 'code'], registers: [registry] });
    // Refused upgrades are counted like frames (see upgradeRefused): one IP past its
    // handshake limit can cause hundreds a second.
    const refusedPending = this.#refusedPending;
    this.upgradesRefused = new Counter({
      name: 'muster_upgrades_refused_total',
      help: 'WebSocket upgrades refused',
      labelNames: ['reason'],
      registers: [registry],
      collect(this: Counter<'reason'>) {
        for (const [reason, n] of refusedPending) if (n > 0) this.inc({ reason }, n);
        refusedPending.clear();
      },
    });
    this.upgradesInProgress = new Gauge({ name: 'muster_upgrades_in_progress', help: 'WebSocket upgrades counted against maxConnections and not yet open or refused', registers: [registry] });
    const dropped = opts.logLinesDropped ?? ((): number => 0);
    let droppedSeen = 0;
    this.logLinesDropped = new Counter({
      name: 'muster_log_lines_dropped_total',
      help: 'Log lines dropped because the log output was closed, failed or too slow',
      registers: [registry],
      collect(this: Counter) {
        const n = dropped();
        if (n > droppedSeen) this.inc(n - droppedSeen);
        droppedSeen = n;
      },
    });
    this.httpDuration = new Histogram({
      name: 'muster_http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
  }

  // Every frame in and out is counted. A prom-client inc() with labels hashes and
  // validates the label set on each call (even through a labels() child): in the bench's
  // profiles (bench/RESULTS.md, P1/P2) that was about 5% of the server's CPU. So frames
  // are counted into plain numbers here and added to the counters when the registry is
  // read (the counters' collect hook), which is exact at every scrape.
  readonly #inPending = new Map<string, number>();
  readonly #outPending = new Map<string, number>();
  readonly #refusedPending = new Map<string, number>();

  #flush(pending: Map<string, number>, counter: Counter<'dialect'>): void {
    for (const [dialect, n] of pending) if (n > 0) counter.inc({ dialect }, n);
    pending.clear();
  }

  framesIn(dialect: string, n: number): void {
    this.#inPending.set(dialect, (this.#inPending.get(dialect) ?? 0) + n);
  }
  framesOut(dialect: string, n: number): void {
    this.#outPending.set(dialect, (this.#outPending.get(dialect) ?? 0) + n);
  }
  /** One refused upgrade, by reason (`muster_upgrades_refused_total{reason}`). */
  upgradeRefused(reason: string): void {
    this.#refusedPending.set(reason, (this.#refusedPending.get(reason) ?? 0) + 1);
  }
  closed(dialect: string, code: number): void {
    this.closesTotal.inc({ dialect, code: String(code) });
  }
}
