/**
 * The schema of Muster's configuration (operations.md, "Config").
 *
 * Every key is optional in the file; every key that has a default carries it here
 * (`default`), so the resolved `MusterConfig` has every field filled except the
 * secrets, which `resolveSecrets` fills. Durations and byte sizes are TypeBox
 * transforms: the file may say `"30s"` or `"4MiB"`, the resolved config always holds
 * a number (milliseconds or bytes). `load.ts` interprets these schemas to validate,
 * normalize and fill defaults, and names the key, the value and what was expected
 * when something is wrong.
 *
 * This file holds the server's own sections and composes the dialects' ones: each
 * dialect's section (keys, defaults, minimums, secrets, limits) is its own file,
 * `config/dialects/<dialect>.ts`, built from `builders.ts` (docs/architecture.md,
 * "Each dialect's config section").
 */
import { Type, type StaticDecode, type StaticEncode } from '@sinclair/typebox';
import { Bool, Bytes, Duration, Enum, ExpectedKey, Int, OptionalSecret, SECOND, Secret, SecretKey, Section, Str } from './builders.js';
import { BusSection } from './dialects/bus.js';
import { ClusterioSection } from './dialects/clusterio.js';
import { DiscodoSection } from './dialects/discodo.js';
import { GamelistSection } from './dialects/gamelist.js';
import { ShardingSection } from './dialects/sharding.js';

export { Bytes, Duration, ExpectedKey, GeneratedKey, MAX_DURATION_MS, MusterKindKey, SecretKey, parseBytes, parseDuration } from './builders.js';

// ---------------------------------------------------------------------------------
// Sections


export const ListenSchema = Section({
  host: Str('127.0.0.1'),
  port: Int(7373, 0, 65535),
});

/** A Redis Sentinel or Redis Cluster node. */
export const RedisNodeSchema = Type.Object(
  {
    host: Str(),
    port: Type.Integer({ minimum: 1, maximum: 65535, [ExpectedKey]: 'an integer from 1 to 65535' }),
  },
  { additionalProperties: false, [ExpectedKey]: 'an object { host, port }' },
);

/**
 * The store. `kind: redis` (cluster mode) connects to `url`, or to the primary `name`
 * through `sentinels`, or to the Redis Cluster `cluster` (docs: README, "Store: redis").
 * The URL may hold a password, so it is a secret like `password`: never echoed.
 */
export const StoreSchema = Section({
  kind: Enum([Type.Literal('sqlite'), Type.Literal('memory'), Type.Literal('redis')], 'sqlite'),
  url: Type.Optional(Type.String({ minLength: 1, pattern: '^rediss?://', [SecretKey]: true, [ExpectedKey]: 'a redis:// or rediss:// URL' })),
  prefix: Type.String({ default: 'muster:', pattern: '^[^{}]*$', [ExpectedKey]: 'a string without "{" or "}"' }),
  sentinels: Type.Optional(Type.Array(RedisNodeSchema, { minItems: 1, [ExpectedKey]: 'a non-empty list of { host, port }' })),
  /** The Sentinel-monitored primary's name. */
  name: Type.Optional(Str()),
  cluster: Type.Optional(Type.Array(RedisNodeSchema, { minItems: 1, [ExpectedKey]: 'a non-empty list of { host, port }' })),
  username: Type.Optional(Str()),
  password: OptionalSecret(),
  sentinelPassword: OptionalSecret(),
  /** Each write also waits for replicas (WAIT) and/or the AOF's fsync (WAITAOF, Redis 7.2+). */
  durability: Type.Optional(
    Type.Object(
      { replicas: Int(0, 0), aof: Bool(false), timeout: Duration(1000, 1) },
      { additionalProperties: false, [ExpectedKey]: 'an object { replicas, aof, timeout }' },
    ),
  ),
});

/**
 * Cluster mode's message side (docs/architecture.md, "The Redis broker"): with a Redis
 * URL here (or `store.kind: redis` and its `store.url`), deliveries to peers on other
 * instances go over Redis pub/sub.
 */
export const ClusterSchema = Section({
  /** A Redis for the message side only (its password is a secret); default: `store.url` when `store.kind` is redis. */
  redisUrl: OptionalSecret(),
  /** Prefix of the broker's Redis keys and channels. */
  prefix: Type.String({ default: 'muster:', [ExpectedKey]: 'a string' }),
  /** How long an instance that stopped heartbeating is still counted in; its peers drop its connections after. */
  presenceTtl: Duration(15_000, 1_000),
  /**
   * The sharding leader's lease in Redis: the leader renews it every third of this and
   * stops counting itself leader a fifth before its end; the others try to take it every
   * half second. Keep it plus a second under `heartbeatGrace - fenceMargin` of the
   * sharding dialect, or CONTROLs fence themselves during a takeover.
   */
  leaseTtl: Duration(6_000, 1_000),
  /**
   * How long an admin list, `/status` or a kick waits for the other instances' answers;
   * the ones that have not answered by then are named missing.
   */
  gatherTimeout: Duration(1_000, 100),
});

export const AdminSchema = Section({
  token: Secret(),
  /** Wrong or missing admin tokens from one IP in a minute before it gets 429 (docs: README, "Admin API"). */
  failedAuthPerIpPerMinute: Int(10, 1),
});

/** Timeouts of the HTTP side of the listener (slow or silent clients). */
export const HttpSchema = Section({
  /** From the connection's first byte (or the previous request) to the end of the request's headers. */
  headersTimeout: Duration(10_000, 0),
  /** From the connection's first byte (or the previous request) to the end of the request's body. */
  requestTimeout: Duration(30_000, 0),
  /**
   * How long a kept-alive connection may sit idle after a response before the server
   * closes it (docs: README, "Slow HTTP clients are cut", and the load-balancer note).
   */
  keepAliveTimeout: Duration(5_000, SECOND),
});

export const TlsSchema = Type.Object(
  { cert: Str(), key: Str() },
  { additionalProperties: false, [ExpectedKey]: 'an object { cert: file.pem, key: file.pem }' },
);

export const LimitsSchema = Section({
  maxPayload: Bytes(1_048_576),
  maxConnections: Int(50_000, 1),
  handshakesPerIpPerMinute: Int(600, 1),
});

export const LogLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const LogSchema = Section({
  level: Enum(
    [
      Type.Literal('fatal'),
      Type.Literal('error'),
      Type.Literal('warn'),
      Type.Literal('info'),
      Type.Literal('debug'),
      Type.Literal('trace'),
      Type.Literal('silent'),
    ],
    'info',
  ),
  /** Write the log to this file (owner-only, reopened on SIGHUP) instead of stdout. */
  file: Type.Optional(Str()),
  /** Log bytes that may wait for a slow reader before further lines are dropped (and counted). */
  maxBufferedBytes: Bytes(4 * 1024 * 1024, 4096),
});

/** Owned by the sharding dialect: `config/dialects/sharding.ts`. */
export const ShardingSchema = ShardingSection;

/** Owned by the clusterio dialect: `config/dialects/clusterio.ts`. */
export const ClusterioSchema = ClusterioSection;

/** Owned by the bus dialect: `config/dialects/bus.ts`. */
export const BusSchema = BusSection;

/** Owned by the discodo dialect: `config/dialects/discodo.ts`. */
export const DiscodoSchema = DiscodoSection;

/** Owned by the gamelist dialect: `config/dialects/gamelist.ts`. */
export const GamelistSchema = GamelistSection;

export const DialectsSchema = Section({
  sharding: ShardingSchema,
  clusterio: ClusterioSchema,
  bus: BusSchema,
  discodo: DiscodoSchema,
  gamelist: GamelistSchema,
});

export const MusterConfigSchema = Type.Object(
  {
    listen: ListenSchema,
    dataDir: Str('./muster-data'),
    /** This instance's id in cluster mode (logs, /readyz, /metrics); generated once into the data directory when absent. */
    instanceId: Type.Optional(
      Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$', [ExpectedKey]: 'letters, digits, ".", "_" or "-" (at most 64, starting with a letter or digit)' }),
    ),
    store: StoreSchema,
    cluster: ClusterSchema,
    admin: AdminSchema,
    tls: Type.Optional(TlsSchema),
    limits: LimitsSchema,
    http: HttpSchema,
    log: LogSchema,
    dialects: DialectsSchema,
    shutdownTimeout: Duration(10_000, 0),
  },
  { additionalProperties: false },
);

// ---------------------------------------------------------------------------------
// Types

/** The resolved config: defaults filled, durations in ms, sizes in bytes. Secrets may be undefined until `resolveSecrets`. */
export type MusterConfig = StaticDecode<typeof MusterConfigSchema>;
export type ListenConfig = StaticDecode<typeof ListenSchema>;
export type StoreConfig = StaticDecode<typeof StoreSchema>;
export type StoreKind = StoreConfig['kind'];
export type AdminConfig = StaticDecode<typeof AdminSchema>;
export type ClusterConfig = StaticDecode<typeof ClusterSchema>;
export type TlsConfig = StaticDecode<typeof TlsSchema>;
export type LimitsConfig = StaticDecode<typeof LimitsSchema>;
export type HttpConfig = StaticDecode<typeof HttpSchema>;
export type LogConfig = StaticDecode<typeof LogSchema>;
export type LogLevel = LogConfig['level'];
export type DialectsConfig = StaticDecode<typeof DialectsSchema>;
export type DialectName = keyof DialectsConfig;
export type ShardingConfig = StaticDecode<typeof ShardingSchema>;
export type ClusterioConfig = StaticDecode<typeof ClusterioSchema>;
export type BusConfig = StaticDecode<typeof BusSchema>;
export type DiscodoConfig = StaticDecode<typeof DiscodoSchema>;
export type GamelistConfig = StaticDecode<typeof GamelistSchema>;

export type DeepPartial<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;

/** What a config file (or the CLI's overrides) may contain: every key optional, durations and sizes as numbers or strings. */
export type MusterConfigInput = DeepPartial<StaticEncode<typeof MusterConfigSchema>>;

export const DIALECT_NAMES = ['sharding', 'clusterio', 'bus', 'discodo', 'gamelist'] as const satisfies readonly DialectName[];
