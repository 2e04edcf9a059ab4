/**
 * A MASTER in its own process, for tests that stop and continue it (SIGSTOP/SIGCONT).
 * `MUSTER_TEST_SHARDING` holds the `dialects.sharding` overrides (JSON); it tells its
 * parent `{type: "listening", port}` over IPC and stops on `{cmd: "stop"}`.
 */
import pino from 'pino';
import { loadConfig } from '../../../src/config/load.js';
import { startMuster } from '../../../src/server.js';
import { MemoryStore } from '../../../src/store/memory.js';

const sharding = JSON.parse(process.env.MUSTER_TEST_SHARDING ?? '{}') as Record<string, unknown>;
const config = loadConfig({
  env: {},
  overrides: {
    listen: { host: '127.0.0.1', port: 0 },
    store: { kind: 'memory' },
    admin: { token: process.env.MUSTER_TEST_ADMIN ?? 'admin' },
    log: { level: 'silent' },
    shutdownTimeout: 2000,
    dialects: {
      bus: { enabled: false },
      clusterio: { enabled: false },
      discodo: { enabled: false },
      gamelist: { enabled: false },
      sharding: { enabled: true, ...sharding },
    },
  } as never,
});
const muster = await startMuster({ config, store: new MemoryStore({ now: () => Date.now() }), logger: pino({ level: 'silent' }), defaultMetrics: false });
process.send?.({ type: 'listening', port: muster.address().port });
process.on('message', (m: { cmd?: string }) => {
  if (m.cmd === 'stop') void muster.stop().then(() => process.exit(0));
});
process.on('disconnect', () => void muster.stop().then(() => process.exit(0)));
