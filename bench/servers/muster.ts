/**
 * Muster under test: the real composition root (startMuster) with a config from
 * loadConfig: memory store, only the bus dialect, a known token, silent logs, and
 * limits generous enough for the bench. Started by the runner; talks over IPC.
 *
 *   --bus '{"heartbeatInterval":5000}'   extra dialects.bus settings (JSON)
 *   --dialects '{"sharding":{…}}'        enable and configure other dialects (JSON,
 *                                        merged over the defaults below; P4–P6)
 *   --limits '{"maxConnections":…}'      extra limits (JSON)
 *   --store '{"kind":"redis","url":…}'   the store (JSON; default memory; P9)
 *   --cluster '{"redisUrl":…}'           cluster settings (JSON; P7–P9: a Redis broker)
 *   --instance ID                        instanceId (cluster mode)
 *   --from DIR                           where Muster's modules are: the plain-JS
 *                                        transpile the runner made (lib/build.ts);
 *                                        default: src/ itself, through tsx
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { MusterConfigInput } from '../../src/config/schema.js';
import { childArgs, emit, serve } from '../lib/ipc.js';
import { BUS_TOKEN } from '../lib/constants.js';
import { serverHandlers } from './common.js';

// tsx turns source maps on for this process; `node dist/cli/main.js` runs without them.
// Left on, every Error whose stack is read (ws makes one for each refused frame) pays
// for a source-map lookup, which is the bench's cost, not Muster's.
process.setSourceMapsEnabled(false);

const args = childArgs();
const from = args.from ?? path.resolve(import.meta.dirname, '../../src');
const load = (mod: string): Promise<unknown> => import(pathToFileURL(path.join(from, mod)).href);
// Started as the CLI launcher (src/cli/main.ts) starts it: the young generation held
// at its initial size first (src/young-gen.ts; startMuster releases it), then the rest
// of Muster, through its public entry point.
const { holdYoungGeneration } = (await load('young-gen.js')) as typeof import('../../src/young-gen.js');
holdYoungGeneration();
const { loadConfig, startMuster } = (await load('index.js')) as typeof import('../../src/index.js');
const busExtra = JSON.parse(args.bus ?? '{}') as Record<string, unknown>;
const dialectsExtra = JSON.parse(args.dialects ?? '{}') as Record<string, Record<string, unknown>>;
const limitsExtra = JSON.parse(args.limits ?? '{}') as Record<string, unknown>;
const store = JSON.parse(args.store ?? '{"kind":"memory"}') as Record<string, unknown>;
const cluster = JSON.parse(args.cluster ?? '{}') as Record<string, unknown>;

const overrides: MusterConfigInput = {
  listen: { host: '127.0.0.1', port: Number(args.port ?? 0) },
  store,
  ...(Object.keys(cluster).length ? { cluster } : {}),
  ...(args.instance ? { instanceId: args.instance } : {}),
  admin: { token: 'bench-admin-token' },
  log: { level: 'silent' },
  shutdownTimeout: 2000,
  limits: { maxConnections: 50_000, handshakesPerIpPerMinute: 10_000_000, ...limitsExtra },
  dialects: {
    bus: { enabled: true, token: BUS_TOKEN, ...busExtra, ...dialectsExtra.bus },
    sharding: { enabled: false, ...dialectsExtra.sharding },
    clusterio: { enabled: false, ...dialectsExtra.clusterio },
    discodo: { enabled: false, ...dialectsExtra.discodo },
    gamelist: { enabled: false, ...dialectsExtra.gamelist },
  },
} as MusterConfigInput;

const config = loadConfig({ env: {}, overrides });
const muster = await startMuster({ config });

serve({
  ...serverHandlers(() => muster.stop()),
  summary: () => {
    const bus = muster.dialect('bus') as unknown as { summary?: () => unknown } | undefined;
    return { connections: muster.transport.size, bus: bus?.summary?.() ?? null };
  },
  /** Whether this instance leads the sharding fleet (cluster mode, P9). */
  leader: () => (muster.dialect('sharding') as unknown as { isLeader?: boolean } | undefined)?.isLeader ?? false,
});
emit('ready', { port: muster.address().port });
