/**
 * Reading the registry at start-up: every slave that ever registered and every instance
 * with its serialized config, from the namespaces the world writes (world/registry.ts).
 * A bad record is logged and skipped.
 */
import type { Logger } from 'pino';
import { parseTree } from '../../protocols/clusterio/codec.js';
import { loadConfig } from '../../protocols/clusterio/config.js';
import type { Store } from '../../store/types.js';
import { INSTANCES_NS, SLAVES_NS } from './world/registry.js';
import type { InstanceRecord, SlaveRecord } from './world/state.js';

export async function loadRegistry(store: Store, logger: Logger): Promise<{ slaves: SlaveRecord[]; instances: InstanceRecord[] }> {
  const slaves: SlaveRecord[] = [];
  const instances: InstanceRecord[] = [];
  for (const [key, v] of await store.list(SLAVES_NS)) {
    const r = v as Partial<SlaveRecord> | null;
    if (r && typeof r.name === 'string' && typeof r.agent === 'string' && typeof r.version === 'string') {
      slaves.push({ id: key, name: r.name, agent: r.agent, version: r.version });
    } else {
      logger.warn({ key }, 'clusterio: skipped a malformed stored slave');
    }
  }
  for (const [key, v] of await store.list(INSTANCES_NS)) {
    const r = v as { config?: unknown; status?: unknown } | null;
    try {
      const loaded = loadConfig(parseTree(String(r?.config)));
      if (!loaded.ok) throw new Error(loaded.error);
      instances.push({ config: loaded.value, status: typeof r?.status === 'string' ? r.status : null });
    } catch (err) {
      logger.warn({ key, err: (err as Error).message }, 'clusterio: skipped a malformed stored instance');
    }
  }
  return { slaves, instances };
}
