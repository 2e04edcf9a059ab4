/**
 * A MASTER in its own process, for tests that stop and continue it (SIGSTOP/SIGCONT).
 * `MUSTER_TEST_SHARDING` holds the `dialects.sharding` overrides (JSON); it tells its
 * parent `{type: "listening", port}` over IPC and stops on `{cmd: "stop"}`.
 */
import pino from 'pino';
import { startMuster } from '../../../src/server.js';
import { MemoryStore } from '../../../src/store/memory.js';
import { shardingOnlyConfig } from '../sharding-config.js';

const sharding = JSON.parse(process.env.MUSTER_TEST_SHARDING ?? '{}') as Record<string, unknown>;
const config = shardingOnlyConfig(sharding, { adminToken: process.env.MUSTER_TEST_ADMIN ?? 'admin' });
const muster = await startMuster({ config, store: new MemoryStore({ now: () => Date.now() }), logger: pino({ level: 'silent' }), defaultMetrics: false });
process.send?.({ type: 'listening', port: muster.address().port });
process.on('message', (m: { cmd?: string }) => {
  if (m.cmd === 'stop') void muster.stop().then(() => process.exit(0));
});
process.on('disconnect', () => void muster.stop().then(() => process.exit(0)));
