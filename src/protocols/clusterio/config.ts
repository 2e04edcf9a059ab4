/**
 * Clusterio's serialized instance config, `{groups: [{name, fields}, …]}`, as the 2020
 * master kept it. Pure functions over lossless trees: groups and fields Muster does not
 * know are kept unchanged (for the slave and for plugins), and every number keeps its
 * digits.
 */
import { scanJson, TOO_DEEP_DETAIL } from '../json.js';
import { idOf, isLosslessNumber, isPlainObject, numberNode, parseTree, type LJson, type LObject } from './codec.js';

export type FieldType = 'string' | 'number' | 'integer' | 'object';

export interface FieldSpec {
  readonly type: FieldType;
  /** May the field be null (set with `""`)? */
  readonly optional: boolean;
}

/** The fields the master knows, and their types (the 2020 master's definitions). */
export const KNOWN_FIELDS: Readonly<Record<string, FieldSpec>> = {
  'instance.name': { type: 'string', optional: false },
  'instance.id': { type: 'integer', optional: false },
  'instance.assigned_slave': { type: 'integer', optional: true },
  'factorio.game_port': { type: 'number', optional: true },
  'factorio.rcon_port': { type: 'number', optional: true },
  'factorio.rcon_password': { type: 'string', optional: true },
  'factorio.settings': { type: 'object', optional: false },
};

export interface ConfigGroup {
  name: string;
  fields: LObject;
  [key: string]: LJson;
}

export interface InstanceConfig {
  groups: ConfigGroup[];
  [key: string]: LJson | ConfigGroup[];
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: string };

/** Checks a serialized config tree (already schema-checked) and returns a private copy. */
export function loadConfig(tree: LJson | undefined): Result<InstanceConfig> {
  if (!isPlainObject(tree) || !Array.isArray(tree.groups)) return { ok: false, error: 'serialized_config must be {groups: [...]}' };
  for (const g of tree.groups) {
    if (!isPlainObject(g) || typeof g.name !== 'string' || !isPlainObject(g.fields)) {
      return { ok: false, error: 'every group of serialized_config must be {name, fields}' };
    }
  }
  const copy = structuredCloneTree(tree) as unknown as InstanceConfig;
  const id = idOf(getField(copy, 'instance.id'));
  if (id === undefined) return { ok: false, error: 'serialized_config has no integer instance.id' };
  const name = getField(copy, 'instance.name');
  if (name !== undefined && typeof name !== 'string') return { ok: false, error: 'instance.name must be a string' };
  const slave = getField(copy, 'instance.assigned_slave');
  if (slave !== undefined && slave !== null && idOf(slave) === undefined) {
    return { ok: false, error: 'instance.assigned_slave must be an integer or null' };
  }
  // The known instance fields are always present, as the 2020 master's config filled them.
  if (name === undefined) setField(copy, 'instance.name', 'New Instance');
  if (slave === undefined) setField(copy, 'instance.assigned_slave', null);
  return { ok: true, value: copy };
}

/** A deep copy that keeps LosslessNumbers (structuredClone would drop their class). */
export function structuredCloneTree(v: LJson): LJson {
  if (Array.isArray(v)) return v.map(structuredCloneTree);
  if (isLosslessNumber(v)) return numberNode(v.value);
  if (isPlainObject(v)) {
    const out: LObject = {};
    for (const [k, x] of Object.entries(v)) out[k] = structuredCloneTree(x as LJson);
    return out;
  }
  return v;
}

function splitField(path: string): [string, string] {
  const dot = path.indexOf('.');
  return dot < 0 ? ['', path] : [path.slice(0, dot), path.slice(dot + 1)];
}

export function getGroup(config: InstanceConfig, name: string): ConfigGroup | undefined {
  return config.groups.find((g) => g.name === name);
}

export function getField(config: InstanceConfig, path: string): LJson | undefined {
  const [group, field] = splitField(path);
  const g = getGroup(config, group);
  if (!g || !Object.hasOwn(g.fields, field)) return undefined;
  return g.fields[field];
}

/** Sets a field; a group the config does not have yet is created. */
export function setField(config: InstanceConfig, path: string, value: LJson): void {
  const [group, field] = splitField(path);
  let g = getGroup(config, group);
  if (!g) {
    g = { name: group, fields: {} };
    config.groups.push(g);
  }
  g.fields[field] = value;
}

export function instanceId(config: InstanceConfig): string {
  return idOf(getField(config, 'instance.id')) as string;
}

export function instanceName(config: InstanceConfig): string {
  const n = getField(config, 'instance.name');
  return typeof n === 'string' ? n : 'New Instance';
}

export function assignedSlave(config: InstanceConfig): string | null {
  const s = getField(config, 'instance.assigned_slave');
  return s === undefined || s === null ? null : (idOf(s) ?? null);
}

export function setAssignedSlave(config: InstanceConfig, slaveId: string | null): void {
  setField(config, 'instance.assigned_slave', slaveId === null ? null : numberNode(slaveId));
}

// The 2020 master's test for a string that parseFloat may take.
const NUMBER_TEXT = /^[+-]?(Infinity|\d+\.(\d+)?([eE][+-]?\d+)?|\.?\d+([eE][+-]?\d+)?)$/;

/**
 * Converts the string a control sends in `set_instance_config_field_request` by the
 * field's type, as the 2020 master did: number fields through parseFloat, `""` to
 * null, object fields through JSON.parse (lossless), unknown fields keep the string.
 */
export function convertFieldValue(path: string, value: string): Result<LJson> {
  const spec = KNOWN_FIELDS[path];
  if (!spec) return { ok: true, value };
  if (value === '') {
    return spec.optional ? { ok: true, value: null } : { ok: false, error: `Field ${path} cannot be null` };
  }
  switch (spec.type) {
    case 'string':
      return { ok: true, value };
    case 'number':
    case 'integer': {
      const text = value.trim();
      if (!NUMBER_TEXT.test(text)) return { ok: false, error: `Expected type of ${path} to be number, not string "${value}"` };
      // An integer keeps every digit (ids beyond 2^53 included).
      if (/^[+-]?\d+$/.test(text)) return { ok: true, value: numberNode(BigInt(text).toString()) };
      const n = Number.parseFloat(text);
      if (!Number.isFinite(n)) return { ok: false, error: `Expected ${path} to be a finite number, not "${value}"` };
      if (spec.type === 'integer' && !Number.isInteger(n)) return { ok: false, error: `Expected ${path} to be an integer, not "${value}"` };
      return { ok: true, value: numberNode(String(n)) };
    }
    case 'object': {
      let parsed: LJson;
      try {
        if (scanJson(value).tooDeep) throw new SyntaxError(TOO_DEEP_DETAIL);
        parsed = parseTree(value);
      } catch (err) {
        return { ok: false, error: `Error parsing value for ${path}: ${(err as Error).message}` };
      }
      if (!isPlainObject(parsed)) return { ok: false, error: `Expected type of ${path} to be object` };
      return { ok: true, value: parsed };
    }
  }
}
