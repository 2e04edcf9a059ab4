import type { Broker, Gathered } from './broker.js';

/**
 * The admin API's lists of every instance, built on `Broker.gather` (gather.ts), and the
 * one way they report an instance that did not answer: the instances asked come back as
 * entries (`answered: false` for those missing from the answer), and a list route sends
 * them in two headers, `Muster-Instances` (who answered) and `Muster-Instances-Missing`
 * (who did not, absent when none), comma-separated.
 */

/** One instance in a merged answer. */
export interface InstanceEntry {
  id: string;
  answered: boolean;
  /** The answer was an error, or (with `answered: false`) why it is missing. */
  error?: string;
}

export const INSTANCES_HEADER = 'muster-instances';
export const MISSING_HEADER = 'muster-instances-missing';

/** The instances of a gather: this one first, then by id; those that did not answer too. */
export function instancesOf(g: Gathered, self: string): Array<InstanceEntry & { value?: unknown }> {
  const out: Array<InstanceEntry & { value?: unknown }> = [];
  for (const [id, a] of g.answers) out.push(a.ok ? { id, answered: true, value: a.value } : { id, answered: false, error: a.error });
  for (const id of g.missing) out.push({ id, answered: false, error: g.reachable ? 'no answer in time' : 'cluster unreachable (Redis down)' });
  return out.sort((a, b) => (a.id === self ? -1 : b.id === self ? 1 : a.id.localeCompare(b.id)));
}

/** An entry without its answer. */
export function entry(i: InstanceEntry): InstanceEntry {
  return { id: i.id, answered: i.answered, ...(i.error !== undefined ? { error: i.error } : {}) };
}

/** The headers that say which instances a list covers. */
export function instanceHeaders(instances: readonly InstanceEntry[]): Record<string, string> {
  const missing = instances.filter((i) => !i.answered).map((i) => i.id);
  return {
    [INSTANCES_HEADER]: instances.filter((i) => i.answered).map((i) => i.id).join(', '),
    ...(missing.length > 0 ? { [MISSING_HEADER]: missing.join(', ') } : {}),
  };
}

/**
 * Every instance's rows of `kind` (each instance answers an array), each tagged with the
 * instance it came from: this instance's first, then by instance id, each in its order.
 */
export async function gatherRows<T extends object>(
  broker: Broker,
  kind: string,
  question: unknown,
  until?: (rows: ReadonlyArray<T & { instance: string }>) => boolean,
): Promise<{ rows: Array<T & { instance: string }>; instances: InstanceEntry[] }> {
  const rowsOf = (answers: Gathered['answers']): Array<T & { instance: string }> =>
    [...answers].flatMap(([instance, a]) => (a.ok && Array.isArray(a.value) ? (a.value as T[]).map((r) => ({ ...r, instance })) : []));
  const g = await broker.gather(kind, question, until ? { until: (answers) => until(rowsOf(answers)) } : {});
  const instances = instancesOf(g, broker.instanceId);
  const rank = new Map(instances.map((i, n) => [i.id, n]));
  const rows = rowsOf(g.answers).sort((a, b) => (rank.get(a.instance) ?? 0) - (rank.get(b.instance) ?? 0));
  return { rows, instances: instances.map(entry) };
}
