/**
 * The master's messages: lists, the instance registry (create, configure, assign, slaves'
 * instance reports), subscriptions, and what is forwarded or relayed. A change is
 * answered only once its writes are durable (registry.ts).
 */
import { compareIds, idOf, numberNode, type Envelope, type LJson } from '../../../protocols/clusterio/codec.js';
import { assignedSlave, convertFieldValue, instanceId, instanceName, loadConfig, setField } from '../../../protocols/clusterio/config.js';
import { FORWARDED_REQUESTS, type MessageKind } from '../../../protocols/clusterio/messages.js';
import { assignData, forward, instanceOutput, onResponse, pluginEvent, requestPeer, respond, respondError } from './forwarding.js';
import { feedLink } from './links.js';
import { assign, beginWrite, deleteInstance, endWrite, putInstance } from './registry.js';
import type { ClusterioWorld, InstanceRecord, LinkRec, PeerRec, SlaveRecord, Tx } from './state.js';

export function sortedSlaves(w: ClusterioWorld): SlaveRecord[] {
  return [...w.registry.slaves.values()].sort((a, b) => compareIds(a.id, b.id));
}

export function sortedInstances(w: ClusterioWorld): Array<[string, InstanceRecord]> {
  return [...w.registry.instances.entries()].sort(([a], [b]) => compareIds(a, b));
}

export function deliverMessage(tx: Tx, link: LinkRec, peer: PeerRec, env: Envelope, kind: MessageKind, plugin: boolean): void {
  if (kind === 'response') return onResponse(tx, link, peer, env);
  if (plugin) {
    if (kind === 'request') return respondError(tx, peer, env, `No handler for ${env.type}`);
    return pluginEvent(tx, peer, env);
  }
  const { w } = tx;
  switch (env.type) {
    case 'list_slaves_request':
      return respond(tx, peer, env, {
        list: sortedSlaves(w).map((s) => ({
          agent: s.agent,
          version: s.version,
          name: s.name,
          id: numberNode(s.id),
          connected: w.slaves.has(s.id) || w.replicas.has(s.id),
        })),
      });
    case 'list_instances_request':
      return respond(tx, peer, env, {
        list: sortedInstances(w).map(([id, rec]) => {
          const slave = assignedSlave(rec.config);
          return { name: instanceName(rec.config), id: numberNode(id), assigned_slave: slave === null ? null : numberNode(slave) };
        }),
      });
    case 'create_instance_request':
      return createInstance(tx, peer, env);
    case 'get_instance_config_request': {
      const rec = findInstance(tx, peer, env);
      if (rec) respond(tx, peer, env, { serialized_config: rec.config as unknown as LJson });
      return;
    }
    case 'set_instance_config_field_request':
      return setConfigField(tx, peer, env);
    case 'assign_instance_command_request':
      return assignCommand(tx, peer, env);
    case 'set_instance_output_subscriptions_request': {
      const ids = (env.tree.instance_ids as LJson[]).map((v) => idOf(v) as string);
      peer.subscriptions = new Set(ids);
      return respond(tx, peer, env);
    }
    case 'update_instances_event':
      return updateInstances(tx, peer, env);
    case 'instance_output_event':
      return instanceOutput(tx, env);
    default:
      if ((FORWARDED_REQUESTS as readonly string[]).includes(env.type.slice(0, -'_request'.length))) return forward(tx, peer, env);
      // The machine only delivers types it has a schema for; anything else is a bug here.
      feedLink(tx, link, { type: 'violation', detail: `Unhandled message ${env.type}` });
  }
}

export function findInstance(tx: Tx, peer: PeerRec, env: Envelope): InstanceRecord | undefined {
  const id = idOf(env.tree.instance_id) as string;
  const rec = tx.w.registry.instances.get(id);
  if (!rec) respondError(tx, peer, env, `Instance with ID ${id} does not exist`);
  return rec;
}

function createInstance(tx: Tx, peer: PeerRec, env: Envelope): void {
  const loaded = loadConfig(env.tree.serialized_config);
  if (!loaded.ok) return respondError(tx, peer, env, loaded.error);
  const id = instanceId(loaded.value);
  if (tx.w.registry.instances.has(id)) return respondError(tx, peer, env, `Instance with ID ${id} already exists`);
  const group = beginWrite(tx, { kind: 'created', peer, req: env });
  putInstance(tx, { config: loaded.value, status: null }, group);
  endWrite(tx, group);
}

function setConfigField(tx: Tx, peer: PeerRec, env: Envelope): void {
  const rec = findInstance(tx, peer, env);
  if (!rec) return;
  const { field, value } = env.data as { field: string; value: string };
  const conv = convertFieldValue(field, value);
  if (!conv.ok) return respondError(tx, peer, env, conv.error);
  const oldId = instanceId(rec.config);
  if (field === 'instance.id') {
    const newId = idOf(conv.value) as string;
    if (newId !== oldId && tx.w.registry.instances.has(newId)) {
      return respondError(tx, peer, env, `Instance with ID ${newId} already exists`);
    }
  }
  const group = beginWrite(tx, { kind: 'configured', peer, req: env, instance: rec });
  setField(rec.config, field, conv.value);
  if (field === 'instance.id') deleteInstance(tx, oldId, group);
  putInstance(tx, rec, group);
  endWrite(tx, group);
}

function assignCommand(tx: Tx, peer: PeerRec, env: Envelope): void {
  const rec = findInstance(tx, peer, env);
  if (!rec) return;
  const slaveId = idOf(env.tree.slave_id) as string;
  const slave = tx.w.slaves.get(slaveId);
  // Here, or (cluster mode) on another instance.
  if (!slave && !tx.w.replicas.has(slaveId)) return respondError(tx, peer, env, `Slave ${slaveId} is not connected`);
  const group = beginWrite(tx, { kind: 'assigned', peer, req: env, instance: rec, slave, slaveId });
  assign(tx, rec, slaveId, group);
  endWrite(tx, group);
}

/**
 * A slave's instances: the configs the master has assigned it are pushed to it, then the
 * instances it has and the master did not know are recorded and assigned to it.
 */
function updateInstances(tx: Tx, slave: PeerRec, env: Envelope): void {
  const { w } = tx;
  const reported = env.tree.instances as Array<{ serialized_config: LJson; status?: LJson }>;
  for (const [, rec] of sortedInstances(w)) {
    if (assignedSlave(rec.config) === slave.slaveId) {
      requestPeer(tx, slave, 'assign_instance_request', assignData(rec), tx.cfg.requestTimeout, { kind: 'log', slave });
    }
  }
  for (const item of reported) {
    const loaded = loadConfig(item.serialized_config);
    if (!loaded.ok) {
      tx.out.push({ type: 'log', level: 'warn', msg: 'clusterio: ignored a reported instance', data: { slave: slave.slaveId, error: loaded.error }, peer: `slave:${slave.slaveId}` });
      continue;
    }
    const id = instanceId(loaded.value);
    const status = typeof item.status === 'string' ? item.status : null;
    const known = w.registry.instances.get(id);
    if (known) {
      if (status !== null && assignedSlave(known.config) === slave.slaveId && known.status !== status) {
        known.status = status;
        putInstance(tx, known);
      }
      continue;
    }
    const rec: InstanceRecord = { config: loaded.value, status };
    assign(tx, rec, slave.slaveId);
    requestPeer(tx, slave, 'assign_instance_request', assignData(rec), tx.cfg.requestTimeout, { kind: 'log', slave });
  }
}
