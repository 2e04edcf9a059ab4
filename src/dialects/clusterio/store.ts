/**
 * Reading the registry: every slave that ever registered and every instance with its
 * serialized config, from the namespaces the world writes (world/registry.ts), at
 * start-up and, in cluster mode, again when another instance says it wrote a record
 * (`readRecord`) or comes up. A bad record is logged and skipped.
 */
import type { Logger } from 'pino';
import { parseTree } from '../../protocols/clusterio/codec.js';
import { loadConfig } from '../../protocols/clusterio/config.js';
import type { JsonValue, Store } from '../../store/types.js';
import { INSTANCES_NS, SLAVES_NS } from './world/registry.js';
import type { InstanceRecord, SlaveRecord } from './world/state.js';

export interface Read {
  slaves: SlaveRecord[];
  instances: InstanceRecord[];
}

function addSlave(out: Read, key: string, v: unknown, logger: Logger): void {
  const r = v as Partial<SlaveRecord> | null;
  if (r && typeof r.name === 'string' && typeof r.agent === 'string' && typeof r.version === 'string') {
    out.slaves.push({ id: key, name: r.name, agent: r.agent, version: r.version });
  } else {
    logger.warn({ key }, 'clusterio: skipped a malformed stored slave');
  }
}

function addInstance(out: Read, key: string, v: unknown, logger: Logger): void {
  const r = v as { config?: unknown; status?: unknown } | null;
  try {
    const loaded = loadConfig(parseTree(String(r?.config)));
    if (!loaded.ok) throw new Error(loaded.error);
    out.instances.push({ config: loaded.value, status: typeof r?.status === 'string' ? r.status : null });
  } catch (err) {
    logger.warn({ key, err: (err as Error).message }, 'clusterio: skipped a malformed stored instance');
  }
}

export async function loadRegistry(store: Store, logger: Logger): Promise<Read> {
  const out: Read = { slaves: [], instances: [] };
  for (const [key, v] of await store.list(SLAVES_NS)) addSlave(out, key, v, logger);
  for (const [key, v] of await store.list(INSTANCES_NS)) addInstance(out, key, v, logger);
  return out;
}

/** One record of the registry (none in the lists: it is not in the store). */
export async function readRecord(store: Store, logger: Logger, ns: string, key: string): Promise<Read> {
  const out: Read = { slaves: [], instances: [] };
  const v: JsonValue | undefined = await store.get(ns, key);
  if (v === undefined) return out;
  if (ns === SLAVES_NS) addSlave(out, key, v, logger);
  else if (ns === INSTANCES_NS) addInstance(out, key, v, logger);
  return out;
}
