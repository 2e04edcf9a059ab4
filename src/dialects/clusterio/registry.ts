import type { Logger } from 'pino';
import { compareIds, parseTree, stringifyTree } from '../../protocols/clusterio/codec.js';
import {
  assignedSlave,
  instanceId,
  instanceName,
  loadConfig,
  setAssignedSlave,
  type InstanceConfig,
} from '../../protocols/clusterio/config.js';
import type { Store } from '../../store/types.js';

/**
 * What the master knows of its cluster and keeps across restarts: every slave that
 * ever registered, and every instance with its serialized config. Kept in memory and
 * written through to the store (namespaces "clusterio:slaves" and
 * "clusterio:instances").
 *
 * Every change is written at once, in the order made (the Store applies writes in call
 * order), and returns a promise that resolves when the write is durable. A response
 * that says the change happened waits for that promise: the in-memory maps may be a
 * moment ahead of the store, an acknowledgement never is.
 */

export const SLAVES_NS = 'clusterio:slaves';
export const INSTANCES_NS = 'clusterio:instances';

export interface SlaveRecord {
  /** Canonical decimal id. */
  readonly id: string;
  readonly name: string;
  readonly agent: string;
  readonly version: string;
}

export interface InstanceRecord {
  config: InstanceConfig;
  /** Last status the slave reported, if any. */
  status: string | null;
}

interface StoredInstance {
  /** The serialized config as lossless JSON text (numbers keep their digits). */
  config: string;
  status: string | null;
  [k: string]: string | null;
}

export class ClusterioRegistry {
  readonly slaves = new Map<string, SlaveRecord>();
  readonly instances = new Map<string, InstanceRecord>();
  readonly #store: Store;
  readonly #logger: Logger;
  /** Writes not yet settled. */
  readonly #pending = new Set<Promise<void>>();

  constructor(store: Store, logger: Logger) {
    this.#store = store;
    this.#logger = logger;
  }

  /** Reads everything from the store. A bad record is logged and skipped. */
  async load(): Promise<void> {
    for (const [key, v] of await this.#store.list(SLAVES_NS)) {
      const r = v as Partial<SlaveRecord> | null;
      if (r && typeof r.name === 'string' && typeof r.agent === 'string' && typeof r.version === 'string') {
        this.slaves.set(key, { id: key, name: r.name, agent: r.agent, version: r.version });
      } else {
        this.#logger.warn({ key }, 'clusterio: skipped a malformed stored slave');
      }
    }
    for (const [key, v] of await this.#store.list(INSTANCES_NS)) {
      const r = v as Partial<StoredInstance> | null;
      try {
        const loaded = loadConfig(parseTree(String(r?.config)));
        if (!loaded.ok) throw new Error(loaded.error);
        this.instances.set(instanceId(loaded.value), { config: loaded.value, status: typeof r?.status === 'string' ? r.status : null });
      } catch (err) {
        this.#logger.warn({ key, err: (err as Error).message }, 'clusterio: skipped a malformed stored instance');
      }
    }
  }

  /** Records a slave; resolves once it is durable (at once when nothing changed). */
  putSlave(rec: SlaveRecord): Promise<void> {
    const cur = this.slaves.get(rec.id);
    this.slaves.set(rec.id, rec);
    if (cur && cur.name === rec.name && cur.agent === rec.agent && cur.version === rec.version) return Promise.resolve();
    return this.#write(this.#store.set(SLAVES_NS, rec.id, { name: rec.name, agent: rec.agent, version: rec.version }));
  }

  /** Adds or replaces an instance, keyed by its `instance.id`; resolves once durable. */
  putInstance(rec: InstanceRecord): Promise<void> {
    const id = instanceId(rec.config);
    this.instances.set(id, rec);
    const value: StoredInstance = { config: stringifyTree(rec.config), status: rec.status };
    return this.#write(this.#store.set(INSTANCES_NS, id, value));
  }

  /** Removes an instance; resolves once durable. */
  deleteInstance(id: string): Promise<void> {
    if (!this.instances.delete(id)) return Promise.resolve();
    return this.#write(this.#store.delete(INSTANCES_NS, id).then(() => undefined));
  }

  assign(rec: InstanceRecord, slaveId: string | null): Promise<void> {
    setAssignedSlave(rec.config, slaveId);
    return this.putInstance(rec);
  }

  sortedSlaves(): SlaveRecord[] {
    return [...this.slaves.values()].sort((a, b) => compareIds(a.id, b.id));
  }

  sortedInstances(): Array<[string, InstanceRecord]> {
    return [...this.instances.entries()].sort(([a], [b]) => compareIds(a, b));
  }

  static describe(rec: InstanceRecord): { id: string; name: string; assignedSlave: string | null } {
    return { id: instanceId(rec.config), name: instanceName(rec.config), assignedSlave: assignedSlave(rec.config) };
  }

  get pendingWrites(): number {
    return this.#pending.size;
  }

  /** Resolves once every write made so far is durable (failed ones are logged, not thrown). */
  async flush(): Promise<void> {
    await Promise.all([...this.#pending]);
  }

  /**
   * Tracks a write the store has already been asked to make. The returned promise
   * rejects if the write failed (the caller answers with an error); the failure is
   * logged here either way.
   */
  #write(op: Promise<void>): Promise<void> {
    const tracked = op.then(
      () => undefined,
      (err: unknown) => {
        this.#logger.error({ err }, 'clusterio: a store write failed');
      },
    );
    this.#pending.add(tracked);
    void tracked.finally(() => this.#pending.delete(tracked));
    return op;
  }
}
