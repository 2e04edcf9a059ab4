/**
 * The master's messages: the instance registry (create, configure, assign, slaves'
 * instance reports), each change answered only once the store has it.
 */
import { idOf, numberNode, stringifyTree, type Envelope, type LJson } from '../../protocols/clusterio/codec.js';
import { assignedSlave, convertFieldValue, instanceId, instanceName, loadConfig, setField } from '../../protocols/clusterio/config.js';
import { FORWARDED_REQUESTS, type MessageKind } from '../../protocols/clusterio/messages.js';
import type { InstanceRecord } from './registry.js';
import type { Hub, Link, Peer } from './types.js';
import { forward, onResponse, relay, requestPeer, respond, respondError } from './forwarding.js';
import { feed } from './links.js';
import { instanceOutput, pluginEvent } from './plugins.js';

export function deliver(hub: Hub, link: Link, peer: Peer, env: Envelope, kind: MessageKind, plugin: boolean): void {
  if (kind === 'response') return onResponse(hub, link, peer, env);
  if (plugin) {
    if (kind === 'request') return respondError(hub, peer, env, `No handler for ${env.type}`);
    return pluginEvent(hub, peer, env);
  }
  switch (env.type) {
    case 'list_slaves_request':
      return respond(hub, peer, env, {
        list: hub.registry.sortedSlaves().map((s) => ({
          agent: s.agent,
          version: s.version,
          name: s.name,
          id: numberNode(s.id),
          connected: hub.slaves.has(s.id),
        })),
      });
    case 'list_instances_request':
      return respond(hub, peer, env, {
        list: hub.registry.sortedInstances().map(([id, rec]) => {
          const slave = assignedSlave(rec.config);
          return { name: instanceName(rec.config), id: numberNode(id), assigned_slave: slave === null ? null : numberNode(slave) };
        }),
      });
    case 'create_instance_request':
      return createInstance(hub, peer, env);
    case 'get_instance_config_request': {
      const rec = findInstance(hub, peer, env);
      if (rec) respond(hub, peer, env, { serialized_config: rec.config as unknown as LJson });
      return;
    }
    case 'set_instance_config_field_request':
      return setConfigField(hub, peer, env);
    case 'assign_instance_command_request':
      return assignCommand(hub, peer, env);
    case 'set_instance_output_subscriptions_request': {
      const ids = (env.tree.instance_ids as LJson[]).map((v) => idOf(v) as string);
      peer.subscriptions = new Set(ids);
      return respond(hub, peer, env);
    }
    case 'update_instances_event':
      return updateInstances(hub, peer, env);
    case 'instance_output_event':
      return instanceOutput(hub, peer, env);
    default:
      if ((FORWARDED_REQUESTS as readonly string[]).includes(env.type.slice(0, -'_request'.length))) return forward(hub, peer, env);
      // The machine only delivers types it has a schema for; anything else is a bug here.
      feed(hub, link, { type: 'violation', detail: `Unhandled message ${env.type}` });
  }
}

export function findInstance(hub: Hub, peer: Peer, env: Envelope): InstanceRecord | undefined {
  const id = idOf(env.tree.instance_id) as string;
  const rec = hub.registry.instances.get(id);
  if (!rec) respondError(hub, peer, env, `Instance with ID ${id} does not exist`);
  return rec;
}

export function assignData(rec: InstanceRecord): string {
  return stringifyTree({ instance_id: numberNode(instanceId(rec.config)), serialized_config: rec.config as unknown as LJson });
}

export function createInstance(hub: Hub, peer: Peer, env: Envelope): void {
  const loaded = loadConfig(env.tree.serialized_config);
  if (!loaded.ok) return respondError(hub, peer, env, loaded.error);
  const id = instanceId(loaded.value);
  if (hub.registry.instances.has(id)) return respondError(hub, peer, env, `Instance with ID ${id} already exists`);
  whenSaved(hub, peer, env, hub.registry.putInstance({ config: loaded.value, status: null }), () => respond(hub, peer, env));
}

/**
 * Runs `then` (which answers `env`) once `write` is durable: nothing that says a change
 * happened goes out before the store has it. A failed write is answered with an error.
 */
export function whenSaved(hub: Hub, peer: Peer, env: Envelope, write: Promise<unknown>, then: () => void): void {
  write
    .then(then, () => respondError(hub, peer, env, 'The master could not save the change'))
    .catch((err: unknown) => hub.ctx.logger.error({ err, type: env.type }, 'clusterio: failed to answer after a write'));
}

export function setConfigField(hub: Hub, peer: Peer, env: Envelope): void {
  const rec = findInstance(hub, peer, env);
  if (!rec) return;
  const { field, value } = env.data as { field: string; value: string };
  const conv = convertFieldValue(field, value);
  if (!conv.ok) return respondError(hub, peer, env, conv.error);
  const oldId = instanceId(rec.config);
  let removed: Promise<void> = Promise.resolve();
  if (field === 'instance.id') {
    const newId = idOf(conv.value) as string;
    if (newId !== oldId && hub.registry.instances.has(newId)) {
      return respondError(hub, peer, env, `Instance with ID ${newId} already exists`);
    }
    setField(rec.config, field, conv.value);
    removed = hub.registry.deleteInstance(oldId);
  } else {
    setField(rec.config, field, conv.value);
  }
  whenSaved(hub, peer, env, Promise.all([removed, hub.registry.putInstance(rec)]), () => {
    const slaveId = assignedSlave(rec.config);
    const slave = slaveId === null ? undefined : hub.slaves.get(slaveId);
    if (!slave) return respond(hub, peer, env);
    // Push the new config to the slave hosting the instance, and answer with its answer.
    pushAssignment(hub, slave, rec, peer, env);
  });
}

export function assignCommand(hub: Hub, peer: Peer, env: Envelope): void {
  const rec = findInstance(hub, peer, env);
  if (!rec) return;
  const slaveId = idOf(env.tree.slave_id) as string;
  const slave = hub.slaves.get(slaveId);
  if (!slave) return respondError(hub, peer, env, `Slave ${slaveId} is not connected`);
  whenSaved(hub, peer, env, hub.registry.assign(rec, slaveId), () => pushAssignment(hub, slave, rec, peer, env));
}

/** Sends the slave `assign_instance_request` for `rec` and relays its answer to `peer`. */
export function pushAssignment(hub: Hub, slave: Peer, rec: InstanceRecord, peer: Peer, env: Envelope): void {
  requestPeer(hub, 
    slave,
    'assign_instance_request',
    assignData(rec),
    hub.cfg.requestTimeout,
    (answer) => relay(hub, peer, env, answer),
    (reason) => respondError(hub, peer, env, reason),
  );
}

export function updateInstances(hub: Hub, slave: Peer, env: Envelope): void {
  const warn = (data: Record<string, unknown>, msg: string): void => {
    const held = hub.peerLog.allow(slave.slaveId);
    if (held !== undefined) hub.ctx.logger.warn(held > 0 ? { ...data, suppressed: held } : data, msg);
  };
  const logFail = (reason: string): void => warn({ slave: slave.slaveId, reason }, 'clusterio: assign_instance_request failed');
  const logAnswer = (answer: Envelope): void => {
    if (typeof answer.data.error === 'string') logFail(answer.data.error);
  };
  const reported = env.tree.instances as Array<{ serialized_config: LJson; status?: LJson }>;
  // Push the configs of the instances the master has assigned to this slave...
  for (const [, rec] of hub.registry.sortedInstances()) {
    if (assignedSlave(rec.config) === slave.slaveId) {
      requestPeer(hub, slave, 'assign_instance_request', assignData(rec), hub.cfg.requestTimeout, logAnswer, logFail);
    }
  }
  // ...then record and assign the instances the slave has and the master did not know.
  for (const item of reported) {
    const loaded = loadConfig(item.serialized_config);
    if (!loaded.ok) {
      warn({ slave: slave.slaveId, error: loaded.error }, 'clusterio: ignored a reported instance');
      continue;
    }
    const id = instanceId(loaded.value);
    const status = typeof item.status === 'string' ? item.status : null;
    const known = hub.registry.instances.get(id);
    if (known) {
      if (status !== null && assignedSlave(known.config) === slave.slaveId && known.status !== status) {
        known.status = status;
        hub.registry.putInstance(known);
      }
      continue;
    }
    const rec: InstanceRecord = { config: loaded.value, status };
    hub.registry.assign(rec, slave.slaveId);
    requestPeer(hub, slave, 'assign_instance_request', assignData(rec), hub.cfg.requestTimeout, logAnswer, logFail);
  }
}
