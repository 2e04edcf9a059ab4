/**
 * The registry's writes: every slave that ever registered and every instance with its
 * serialized config, changed in memory at once and written through to the store
 * (namespaces "clusterio:slaves" and "clusterio:instances") as `persist`/`unpersist`
 * effects. An answer that says a change happened waits for its writes: each such write
 * names a pending write (`settled`), and the runtime feeds `settled` once the store has
 * it; then the answer goes (or, if a write failed, an error). Frames about anything else
 * go out meanwhile.
 */
import { stringifyTree } from '../../../protocols/clusterio/codec.js';
import { assignedSlave, instanceId, setAssignedSlave } from '../../../protocols/clusterio/config.js';
import { recordWritten, slaveOnline } from './cluster.js';
import { pushAssignment, relay, respond, respondError } from './forwarding.js';
import { onRegisterSaved } from './peers.js';
import type { InstanceRecord, SlaveRecord, Then, Tx } from './state.js';

export const SLAVES_NS = 'clusterio:slaves';
export const INSTANCES_NS = 'clusterio:instances';
export const SAVE_FAILED = 'The master could not save the change';

/** Starts a group of writes one answer waits on; `endWrite` once they are all issued. */
export function beginWrite(tx: Tx, then: Then): string {
  const id = `w${tx.w.nextWrite++}`;
  tx.w.writes.set(id, { left: 0, failed: false, then });
  return id;
}

/** All the group's writes are issued: with none, what waits runs now. */
export function endWrite(tx: Tx, id: string): void {
  const pw = tx.w.writes.get(id);
  if (!pw || pw.left > 0) return;
  tx.w.writes.delete(id);
  runThen(tx, pw.then, !pw.failed);
}

/** One write of a group has settled. */
export function onSettled(tx: Tx, id: string, ok: boolean): void {
  const pw = tx.w.writes.get(id);
  if (!pw) return;
  pw.left--;
  if (!ok) pw.failed = true;
  endWrite(tx, id);
}

/** `{settled}` for a write of group `id` (counted in it), or nothing for a write no answer waits on. */
function counted(tx: Tx, id: string | undefined): { settled?: string } {
  if (id === undefined) return {};
  const pw = tx.w.writes.get(id);
  if (pw) pw.left++;
  return { settled: id };
}

function runThen(tx: Tx, then: Then, ok: boolean): void {
  switch (then.kind) {
    case 'register':
      return onRegisterSaved(tx, then.conn, then.attempt, then.msg, then.session, ok);
    case 'created':
      return ok ? respond(tx, then.peer, then.req) : respondError(tx, then.peer, then.req, SAVE_FAILED);
    case 'configured': {
      if (!ok) return respondError(tx, then.peer, then.req, SAVE_FAILED);
      const slaveId = assignedSlave(then.instance.config);
      if (slaveId === null || !slaveOnline(tx, slaveId)) return respond(tx, then.peer, then.req);
      // Push the new config to the slave hosting the instance (here or on another instance), and answer with its answer.
      return pushAssignment(tx, tx.w.slaves.get(slaveId) ?? slaveId, then.instance, then.peer, then.req);
    }
    case 'assigned':
      if (!ok) return respondError(tx, then.peer, then.req, SAVE_FAILED);
      return pushAssignment(tx, then.slave ?? then.slaveId, then.instance, then.peer, then.req);
    case 'deleted':
      return ok ? relay(tx, then.peer, then.req, then.answer) : respondError(tx, then.peer, then.req, SAVE_FAILED);
  }
}

/**
 * Records a slave. Returns true when it was written (`then` runs once durable); false when
 * nothing changed (nothing to wait for; `then` is not kept).
 */
export function putSlave(tx: Tx, rec: SlaveRecord, then: Then): boolean {
  const slaves = tx.w.registry.slaves;
  const cur = slaves.get(rec.id);
  slaves.set(rec.id, rec);
  if (cur && cur.name === rec.name && cur.agent === rec.agent && cur.version === rec.version) return false;
  const id = beginWrite(tx, then);
  tx.out.push({ type: 'persist', namespace: SLAVES_NS, key: rec.id, value: { name: rec.name, agent: rec.agent, version: rec.version }, ...counted(tx, id) });
  recordWritten(tx, SLAVES_NS, rec.id);
  return true;
}

/** Adds or replaces an instance, keyed by its `instance.id`; part of write group `group` if given. */
export function putInstance(tx: Tx, rec: InstanceRecord, group?: string): void {
  const id = instanceId(rec.config);
  tx.w.registry.instances.set(id, rec);
  const value = { config: stringifyTree(rec.config), status: rec.status };
  tx.out.push({ type: 'persist', namespace: INSTANCES_NS, key: id, value, ...counted(tx, group) });
  recordWritten(tx, INSTANCES_NS, id);
}

/** Removes an instance (if known); part of write group `group` if given. */
export function deleteInstance(tx: Tx, id: string, group?: string): void {
  if (!tx.w.registry.instances.delete(id)) return;
  tx.out.push({ type: 'unpersist', namespace: INSTANCES_NS, key: id, ...counted(tx, group) });
  recordWritten(tx, INSTANCES_NS, id);
}

export function assign(tx: Tx, rec: InstanceRecord, slaveId: string | null, group?: string): void {
  setAssignedSlave(rec.config, slaveId);
  putInstance(tx, rec, group);
}

/** What the store held at start-up (read by the dialect). */
export function onLoaded(tx: Tx, slaves: readonly SlaveRecord[], instances: readonly InstanceRecord[]): void {
  for (const s of slaves) tx.w.registry.slaves.set(s.id, s);
  for (const rec of instances) tx.w.registry.instances.set(instanceId(rec.config), rec);
}
