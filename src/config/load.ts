/**
 * Loading the configuration: file (YAML or JSON) < `MUSTER_*` environment < CLI
 * overrides, then defaults, normalization (durations to ms, sizes to bytes) and
 * validation. Every problem is a `ConfigError` naming the key, the value and what was
 * expected, so a bad config stops start-up with a message an operator can act on.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Kind, OptionalKind, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import {
  DIALECT_NAMES,
  ExpectedKey,
  MAX_DURATION_MS,
  MusterConfigSchema,
  MusterKindKey,
  SecretKey,
  parseBytes,
  parseDuration,
  type MusterConfig,
  type MusterConfigInput,
} from './schema.js';

/** HTTP routes served on the same listener; no dialect may sit on them or under them. */
export const RESERVED_HTTP_PATHS = ['/healthz', '/readyz', '/metrics', '/api/v1', '/v2/servers', '/client/servers'] as const;

const REDACTED = '<redacted>';

export interface ConfigErrorOptions {
  /** What is wrong, when "expected …" alone does not say it (e.g. "unknown key"). */
  problem?: string;
  /** The value is a secret: it is replaced by `<redacted>` in the error. */
  secret?: boolean;
  cause?: unknown;
}

/** A configuration problem. `key` is a dotted path (or the config file for read and syntax errors). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The catalogue's CONFIG_INVALID code, written out: config/ imports nothing outside it (test/unit/errors.test.ts ties the two). */
  readonly code = 'MUSTER_CONFIG_INVALID';
  readonly key: string;
  readonly value: unknown;
  readonly expected: string;

  constructor(key: string, value: unknown, expected: string, options: ConfigErrorOptions = {}) {
    const shown = options.secret && value !== undefined ? REDACTED : value;
    const subject = shown === undefined ? key : `${key} = ${formatValue(shown)}`;
    const problem = options.problem === undefined ? '' : `${options.problem}; `;
    super(`config: ${subject}: ${problem}expected ${expected}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.key = key;
    this.value = shown;
    this.expected = expected;
  }
}

function formatValue(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'string' && value === REDACTED ? value : (JSON.stringify(value) ?? String(value));
  } catch {
    text = String(value);
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

export interface LoadConfigOptions {
  /** A .yaml, .yml or .json file. When absent, `MUSTER_CONFIG` names it; with neither, only defaults apply. */
  file?: string;
  /** Defaults to `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** CLI flags: highest precedence. */
  overrides?: MusterConfigInput;
}

/** Reads, merges, normalizes and validates the configuration. Throws `ConfigError`. */
export function loadConfig(opts: LoadConfigOptions = {}): MusterConfig {
  const env = opts.env ?? process.env;
  const file = nonEmpty(opts.file) ?? nonEmpty(env['MUSTER_CONFIG']);
  const fromFile = file === undefined ? {} : readConfigFile(file);
  const merged = deepMerge(deepMerge(fromFile, envOverrides(env)), opts.overrides ?? {});
  return validateConfig(merged);
}

/** The configuration with nothing configured: every default of operations.md. */
export function defaultConfig(): MusterConfig {
  return validateConfig({});
}

/** Normalizes and validates an already-parsed raw config (as from a file). Throws `ConfigError`. */
export function validateConfig(raw: unknown): MusterConfig {
  const config = normalize(MusterConfigSchema, raw, '') as MusterConfig;
  checkPaths(config);
  checkLimits(config);
  checkFencing(config);
  checkTls(config);
  checkStore(config);
  checkCluster(config);
  // Compiled here and dropped after: the bus protocol keeps TypeBox's compiler loaded
  // anyway, while its `Value` module (about 0.5 MiB) would be loaded for this check alone.
  const check = TypeCompiler.Compile(MusterConfigSchema);
  if (!check.Check(config)) {
    // Safety net: normalize() should have caught everything the schema says.
    const first = check.Errors(config).First();
    const key = first ? first.path.slice(1).replaceAll('/', '.') : '(root)';
    throw new ConfigError(key, first?.value, first?.message ?? 'a valid config');
  }
  return config;
}

// ---------------------------------------------------------------------------------
// Sources

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/**
 * The YAML parser, loaded when a YAML file is first read: a server configured by
 * environment, overrides or a JSON file does not keep it in memory (about 0.6 MiB).
 */
let yamlModule: typeof import('yaml') | undefined;
function yaml(): typeof import('yaml') {
  return (yamlModule ??= createRequire(import.meta.url)('yaml') as typeof import('yaml'));
}

/** Reads a YAML or JSON config file (by extension; anything but .json is read as YAML, which accepts JSON too). */
export function readConfigFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConfigError(file, undefined, 'a readable YAML or JSON config file', {
      problem: `cannot read the file (${reason})`,
      cause: err,
    });
  }
  text = text.replace(/^\uFEFF/, '');
  let raw: unknown;
  if (path.extname(file).toLowerCase() === '.json') {
    try {
      raw = JSON.parse(text);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new ConfigError(file, undefined, 'valid JSON', { problem: `JSON syntax error (${reason})`, cause: err });
    }
  } else {
    const doc = yaml().parseDocument(text, { prettyErrors: true, uniqueKeys: true });
    const first = doc.errors[0];
    if (first) {
      const where = first.linePos ? ` at line ${first.linePos[0].line}, column ${first.linePos[0].col}` : '';
      const reason = (first.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
      throw new ConfigError(file, undefined, 'valid YAML or JSON', {
        problem: `YAML syntax error${where} (${reason})`,
        cause: first,
      });
    }
    try {
      raw = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      throw new ConfigError(file, undefined, 'valid YAML or JSON', { problem: `YAML error (${reason})`, cause: err });
    }
  }
  if (raw === null || raw === undefined) return {}; // an empty file: all defaults
  if (!isPlainObject(raw)) {
    throw new ConfigError(file, undefined, 'a mapping of config keys at the top level', {
      problem: `the file holds ${describeType(raw)}`,
    });
  }
  return raw;
}

/** `MUSTER_PORT`, `MUSTER_HOST`, `MUSTER_DATA_DIR`, `MUSTER_ADMIN_TOKEN` (empty values are ignored). */
function envOverrides(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const listen: Record<string, unknown> = {};
  const port = nonEmpty(env['MUSTER_PORT']);
  if (port !== undefined) {
    const n = /^\s*\d+\s*$/.test(port) ? Number(port) : Number.NaN;
    if (!Number.isInteger(n) || n > 65535) {
      throw new ConfigError('listen.port', port, 'an integer from 0 to 65535', { problem: 'bad MUSTER_PORT' });
    }
    listen['port'] = n;
  }
  const host = nonEmpty(env['MUSTER_HOST']);
  if (host !== undefined) listen['host'] = host;
  if (Object.keys(listen).length > 0) out['listen'] = listen;
  const dataDir = nonEmpty(env['MUSTER_DATA_DIR']);
  if (dataDir !== undefined) out['dataDir'] = dataDir;
  const adminToken = nonEmpty(env['MUSTER_ADMIN_TOKEN']);
  if (adminToken !== undefined) out['admin'] = { token: adminToken };
  return out;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  // defineProperty, so that a "__proto__" key stays a plain (and then rejected) key
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Objects merge key by key; anything else (arrays included) in `over` replaces `base`; `undefined` is ignored. */
function deepMerge(base: unknown, over: unknown): unknown {
  if (over === undefined) return base;
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(base)) setOwn(out, k, v);
  for (const [k, v] of Object.entries(over)) setOwn(out, k, deepMerge(out[k], v));
  return out;
}

// ---------------------------------------------------------------------------------
// Schema interpreter: unknown keys, defaults, normalization, type checks

type SchemaNode = TSchema & Record<string | symbol, unknown>;

function join(base: string, key: string): string {
  return base === '' ? key : `${base}.${key}`;
}

function expectedOf(schema: SchemaNode, fallback: string): string {
  const e = schema[ExpectedKey];
  return typeof e === 'string' ? e : fallback;
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return typeof value === 'object' ? 'a mapping' : `a ${typeof value}`;
}

function fail(schema: SchemaNode, key: string, value: unknown, fallback: string, problem?: string): never {
  throw new ConfigError(key, value, expectedOf(schema, fallback), {
    secret: schema[SecretKey] === true,
    ...(problem === undefined ? {} : { problem }),
  });
}

function normalize(schemaIn: TSchema, value: unknown, key: string): unknown {
  const schema = schemaIn as SchemaNode;
  const kind = schema[MusterKindKey];
  if (kind === 'duration') {
    const ms = parseDuration(value);
    if (ms === undefined) {
      const tooBig = typeof value === 'number' && value > MAX_DURATION_MS;
      fail(schema, key, value, 'a duration', tooBig ? `longer than ${MAX_DURATION_MS} ms (about 24.8 days)` : undefined);
    }
    const min = typeof schema['minimumMs'] === 'number' ? schema['minimumMs'] : 0;
    if (ms < min) fail(schema, key, value, 'a duration', `shorter than the minimum (${min} ms)`);
    return ms;
  }
  if (kind === 'bytes') {
    const bytes = parseBytes(value);
    const min = typeof schema['minimumBytes'] === 'number' ? schema['minimumBytes'] : 0;
    if (bytes === undefined || bytes < min) fail(schema, key, value, 'a size in bytes');
    return bytes;
  }
  switch (schema[Kind]) {
    case 'Object':
      return normalizeObject(schema, value, key);
    case 'Union': {
      const literals = ((schema['anyOf'] as SchemaNode[] | undefined) ?? []).map((s) => s['const']);
      if (!literals.includes(value)) fail(schema, key, value, 'one of the allowed values');
      return value;
    }
    case 'Integer':
    case 'Number': {
      const integer = schema[Kind] === 'Integer';
      const ok =
        typeof value === 'number' &&
        Number.isFinite(value) &&
        (!integer || Number.isInteger(value)) &&
        (typeof schema['minimum'] !== 'number' || value >= schema['minimum']) &&
        (typeof schema['maximum'] !== 'number' || value <= schema['maximum']);
      if (!ok) fail(schema, key, value, integer ? 'an integer' : 'a number');
      return value;
    }
    case 'String': {
      if (typeof value !== 'string') fail(schema, key, value, 'a string', `got ${describeType(value)}`);
      if (typeof schema['minLength'] === 'number' && value.length < schema['minLength']) fail(schema, key, value, 'a non-empty string');
      if (typeof schema['pattern'] === 'string' && !new RegExp(schema['pattern'], 'u').test(value)) fail(schema, key, value, 'a string');
      return value;
    }
    case 'Boolean':
      if (typeof value !== 'boolean') fail(schema, key, value, 'true or false');
      return value;
    case 'Array': {
      if (!Array.isArray(value)) fail(schema, key, value, 'a list', `got ${describeType(value)}`);
      if (typeof schema['minItems'] === 'number' && value.length < schema['minItems']) fail(schema, key, value, 'a non-empty list');
      const items = schema['items'] as TSchema;
      return value.map((item, i) => normalize(items, item, `${key}[${i}]`));
    }
    default:
      throw new Error(`config schema: unsupported schema kind ${String(schema[Kind])} at ${key}`);
  }
}

function normalizeObject(schema: SchemaNode, value: unknown, key: string): Record<string, unknown> {
  if (!isPlainObject(value)) fail(schema, key || '(root)', value, 'a mapping (object)', `got ${describeType(value)}`);
  const properties = schema['properties'] as Record<string, SchemaNode>;
  const known = Object.keys(properties);
  for (const k of Object.keys(value)) {
    if (!Object.hasOwn(properties, k)) {
      const hint = suggest(k, known);
      const expected = `one of ${known.join(', ')}${hint === undefined ? '' : ` (did you mean "${hint}"?)`}`;
      throw new ConfigError(join(key, k), value[k], expected, { problem: 'unknown key' });
    }
  }
  const out: Record<string, unknown> = {};
  for (const [k, prop] of Object.entries(properties)) {
    const childKey = join(key, k);
    const v = value[k];
    if (v !== undefined) {
      out[k] = normalize(prop, v, childKey);
    } else if (prop[OptionalKind] === 'Optional') {
      continue;
    } else if (prop[Kind] === 'Object') {
      out[k] = normalizeObject(prop, {}, childKey);
    } else if ('default' in prop) {
      out[k] = normalize(prop, structuredClone(prop['default']), childKey);
    } else {
      fail(prop, childKey, undefined, 'a value', 'missing');
    }
  }
  return out;
}

/** The known key closest to a typo (edit distance ≤ 2, or same letters in another case). */
function suggest(typo: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = candidate.toLowerCase() === typo.toLowerCase() ? 0 : editDistance(typo, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

// ---------------------------------------------------------------------------------
// Cross-key checks

function trimSlash(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

function checkPaths(config: MusterConfig): void {
  const taken = new Map<string, string>();
  for (const name of DIALECT_NAMES) {
    const dialect = config.dialects[name];
    if (!dialect.enabled) continue;
    const key = `dialects.${name}.path`;
    const p = dialect.path;
    if (!p.startsWith('/')) throw new ConfigError(key, p, 'a URL path starting with "/"');
    const segments = p.split('/').slice(1);
    if (segments.some((s, i) => s === '.' || s === '..' || (s === '' && i < segments.length - 1))) {
      throw new ConfigError(key, p, 'a URL path without empty, "." or ".." segments');
    }
    const norm = trimSlash(p);
    if (norm === '/') {
      throw new ConfigError(key, p, 'a path other than "/"', { problem: 'the dashboard is served at "/"' });
    }
    for (const route of RESERVED_HTTP_PATHS) {
      if (norm === route || norm.startsWith(`${route}/`)) {
        throw new ConfigError(key, p, `a path that is not ${route} or under it`, {
          problem: `it collides with the HTTP route ${route}`,
        });
      }
    }
    const other = taken.get(norm);
    if (other !== undefined) {
      throw new ConfigError(key, p, `a path distinct from every other enabled dialect's`, {
        problem: `dialects.${other}.path is the same`,
      });
    }
    taken.set(norm, name);
  }
}

function checkLimits(config: MusterConfig): void {
  const { maxPayload } = config.limits;
  const bus = config.dialects.bus;
  if (bus.enabled && bus.maxMessageBytes > maxPayload) {
    throw new ConfigError('dialects.bus.maxMessageBytes', bus.maxMessageBytes, `at most limits.maxPayload (${maxPayload})`, {
      problem: 'larger frames are refused by the socket layer first',
    });
  }
}

/** A CONTROL fences `fenceMargin` before the MASTER's deadlines: the margin must leave a positive fence time. */
function checkFencing(config: MusterConfig): void {
  const sh = config.dialects.sharding;
  if (!sh.enabled) return;
  const limit = Math.min(sh.heartbeatInterval + sh.heartbeatGrace, sh.reconnectWindow);
  if (sh.fenceMargin >= limit) {
    throw new ConfigError('dialects.sharding.fenceMargin', sh.fenceMargin, `less than both heartbeatInterval + heartbeatGrace (${sh.heartbeatInterval + sh.heartbeatGrace}) and reconnectWindow (${sh.reconnectWindow})`, {
      problem: 'a CONTROL fences fenceMargin before the MASTER gives its shards away, so it would never serve',
    });
  }
}

/** A Redis store is reached one way: a URL, or Sentinel (with the primary's name), or a Cluster. */
function checkStore(config: MusterConfig): void {
  const st = config.store;
  const ways = [st.url !== undefined, st.sentinels !== undefined, st.cluster !== undefined].filter(Boolean).length;
  if (ways > 1) {
    throw new ConfigError('store', undefined, 'one of url, sentinels (with name) or cluster', { problem: 'more than one way to reach Redis' });
  }
  if (st.sentinels !== undefined && st.name === undefined) {
    throw new ConfigError('store.name', undefined, "the name of the primary the Sentinels monitor (Sentinel's master name)", { problem: 'store.sentinels needs it' });
  }
  if (st.durability !== undefined && st.cluster !== undefined && (st.durability.replicas > 0 || st.durability.aof)) {
    throw new ConfigError('store.durability', undefined, 'no WAIT/WAITAOF with Redis Cluster', { problem: 'a wait must reach the node that took the write' });
  }
}

/**
 * Cluster mode is one Redis for the store and the broker. The broker connects by URL, so a
 * store reached through Sentinel or a Cluster needs `cluster.redisUrl`; and the sharding
 * leader's lease and fenced writes live in the Redis store, so with a broker but a store
 * of its own every instance would lead the fleet.
 */
function checkCluster(config: MusterConfig): void {
  const st = config.store;
  if (st.kind === 'redis' && st.url === undefined && (st.sentinels !== undefined || st.cluster !== undefined) && config.cluster.redisUrl === undefined) {
    throw new ConfigError('cluster.redisUrl', undefined, 'a redis:// URL for the cluster broker', {
      problem: 'the store is reached through Sentinel or a Redis Cluster, which the broker does not use (it connects by URL)',
    });
  }
  if (config.cluster.redisUrl !== undefined && st.kind !== 'redis' && config.dialects.sharding.enabled) {
    throw new ConfigError('store.kind', st.kind, '"redis" in cluster mode (cluster.redisUrl set) while the sharding dialect is enabled', {
      problem: "the sharding leader's lease and fenced writes live in the shared Redis store; with a store per instance every instance would lead the fleet",
    });
  }
}

function checkTls(config: MusterConfig): void {
  if (config.tls === undefined) return;
  for (const which of ['cert', 'key'] as const) {
    const file = config.tls[which];
    try {
      fs.accessSync(file, fs.constants.R_OK);
    } catch (err) {
      throw new ConfigError(`tls.${which}`, file, 'a readable PEM file', {
        problem: `cannot read it (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        cause: err,
      });
    }
  }
}
