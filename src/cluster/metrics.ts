import { Counter, Gauge, type Registry } from 'prom-client';
import type { RedisBroker, RedisBrokerStats } from './redis-broker.js';

/** Puts the broker's state and counts on a metrics registry (read when it is scraped). */
export function registerBrokerMetrics(registry: Registry, broker: RedisBroker): void {
  const registers = [registry];
  const stats = broker.stats;
  new Gauge({
    name: 'muster_cluster_ready',
    help: 'Whether this instance is joined to its peers over Redis (1) or not (0)',
    registers,
    collect() {
      this.set(broker.ready ? 1 : 0);
    },
  });
  new Gauge({
    name: 'muster_cluster_peers',
    help: 'Other instances seen alive',
    registers,
    collect() {
      this.set(broker.peers.length);
    },
  });
  const counts: Array<[keyof RedisBrokerStats, string]> = [
    ['published', 'Messages published to Redis for other instances'],
    ['publishes', 'PUBLISH commands sent to Redis (one carries consecutive messages to one channel sent in the same event-loop turn)'],
    ['received', 'Messages from other instances handled here'],
    ['refused', 'Remote deliveries not sent because Redis was unreachable'],
    ['unroutable', 'Deliveries to a connection found on no instance'],
  ];
  for (const [key, help] of counts) {
    new Counter({
      name: `muster_cluster_${key}_total`,
      help,
      registers,
      collect() {
        // prom-client counters only go up: set to the broker's own running count.
        this.reset();
        this.inc(stats[key]);
      },
    });
  }
}
