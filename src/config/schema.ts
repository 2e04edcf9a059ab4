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
 */
import {
  Type,
  type Static,
  type StaticDecode,
  type StaticEncode,
  type TSchema,
  type TString,
  type TInteger,
  type TBoolean,
  type TLiteral,
} from '@sinclair/typebox';

/** Custom schema keyword: how `load.ts` normalizes a leaf before checking it. */
export const MusterKindKey = 'x-muster-kind';
/** Custom schema keyword: what a value must look like, in the words of an error message. */
export const ExpectedKey = 'x-muster-expected';
/** Custom schema keyword: the value is a secret, never echoed in an error message. */
export const SecretKey = 'x-muster-secret';

/** The longest delay a Node.js timer honours (2^31 - 1 ms, about 24.8 days). */
export const MAX_DURATION_MS = 2_147_483_647;

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_PART = /(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)/gy;

/**
 * Parses a duration: a non-negative number of milliseconds, or a string such as
 * `"250ms"`, `"30s"`, `"1.5s"`, `"5m"`, `"1h"`, `"1d"`, `"1m30s"`, or `"1500"` (ms).
 * Returns the number of milliseconds (rounded to an integer for strings), or
 * `undefined` when the value is not a duration or is out of range.
 */
export function parseDuration(value: unknown): number | undefined {
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else if (typeof value === 'string') {
    const text = value.trim().toLowerCase();
    if (text === '') return undefined;
    if (/^\d+(\.\d+)?$/.test(text)) {
      ms = Number(text);
    } else {
      DURATION_PART.lastIndex = 0;
      let total = 0;
      let end = 0;
      let match: RegExpExecArray | null;
      while ((match = DURATION_PART.exec(text)) !== null) {
        const unit = DURATION_UNITS[match[2] ?? ''];
        if (unit === undefined) return undefined;
        total += Number(match[1]) * unit;
        end = DURATION_PART.lastIndex;
        // allow blanks between parts ("1m 30s")
        while (text[DURATION_PART.lastIndex] === ' ') DURATION_PART.lastIndex += 1;
      }
      if (end === 0 || end !== text.length) return undefined;
      ms = Math.round(total);
    }
  } else {
    return undefined;
  }
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_DURATION_MS) return undefined;
  return ms;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1000,
  k: 1024,
  kib: 1024,
  mb: 1000 ** 2,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1000 ** 3,
  g: 1024 ** 3,
  gib: 1024 ** 3,
};

/**
 * Parses a byte size: a non-negative integer, or a string such as `"32KiB"`,
 * `"4MiB"`, `"1MB"` (SI units are powers of 1000, IEC units and bare `K`/`M`/`G`
 * powers of 1024). Returns the number of bytes, or `undefined` when the value is not
 * a whole number of bytes.
 */
export function parseBytes(value: unknown): number | undefined {
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value;
  } else if (typeof value === 'string') {
    const match = /^(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)$/i.exec(value.trim());
    if (!match) return undefined;
    const unit = SIZE_UNITS[(match[2] ?? '').toLowerCase()];
    if (unit === undefined) return undefined;
    bytes = Number(match[1]) * unit;
  } else {
    return undefined;
  }
  if (!Number.isSafeInteger(bytes) || bytes < 0) return undefined;
  return bytes;
}

// ---------------------------------------------------------------------------------
// Leaf builders

const DURATION_EXPECTED = 'a duration in ms or a string like "30s"';
const BYTES_EXPECTED = 'a size in bytes or a string like "32KiB" or "4MiB"';

/** `1500` → "1.5s", `100` → "100ms": a minimum in the words of an error message. */
function formatMs(ms: number): string {
  return ms >= 1000 && ms % 100 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * A duration in milliseconds, at least `minMs`; the file may use `"30s"`-style strings.
 * Every duration has a minimum (README, "Durations"): intervals and the deadlines a peer
 * must meet are at least 1s, waits inside the server at least 100ms, and only windows
 * where 0 means "at once" may be 0. A zero interval would spin or make a timer throw.
 */
export function Duration(defaultMs: number, minMs: number) {
  const expected = minMs > 0 ? `${DURATION_EXPECTED}, at least ${formatMs(minMs)}` : DURATION_EXPECTED;
  return Type.Transform(
    Type.Union([Type.Number({ minimum: minMs, maximum: MAX_DURATION_MS }), Type.String()], {
      default: defaultMs,
      [MusterKindKey]: 'duration',
      [ExpectedKey]: expected,
      minimumMs: minMs,
    }),
  )
    .Decode((value): number => {
      const ms = parseDuration(value);
      if (ms === undefined || ms < minMs) throw new TypeError(`expected ${expected}`);
      return ms;
    })
    .Encode((ms) => ms);
}

/** A size in bytes (at least `min`); the file may use `"32KiB"`-style strings. */
export function Bytes(defaultBytes: number, min = 1) {
  return Type.Transform(
    Type.Union([Type.Integer({ minimum: min }), Type.String()], {
      default: defaultBytes,
      [MusterKindKey]: 'bytes',
      [ExpectedKey]: min > 0 ? `${BYTES_EXPECTED}, at least ${min}` : BYTES_EXPECTED,
      minimumBytes: min,
    }),
  )
    .Decode((value): number => {
      const bytes = parseBytes(value);
      if (bytes === undefined || bytes < min) throw new TypeError(`expected ${BYTES_EXPECTED}`);
      return bytes;
    })
    .Encode((bytes) => bytes);
}

function Int(defaultValue: number, minimum: number, maximum?: number): TInteger {
  const range = maximum === undefined ? `≥ ${minimum}` : `from ${minimum} to ${maximum}`;
  return Type.Integer({
    default: defaultValue,
    minimum,
    ...(maximum === undefined ? {} : { maximum }),
    [ExpectedKey]: `an integer ${range}`,
  });
}

function Bool(defaultValue: boolean): TBoolean {
  return Type.Boolean({ default: defaultValue, [ExpectedKey]: 'true or false' });
}

function Str(defaultValue?: string): TString {
  return Type.String({
    minLength: 1,
    ...(defaultValue === undefined ? {} : { default: defaultValue }),
    [ExpectedKey]: 'a non-empty string',
  });
}

/** A secret string: optional (generated at first start when absent), never echoed. */
function Secret() {
  return Type.Optional(Type.String({ minLength: 1, [SecretKey]: true, [ExpectedKey]: 'a non-empty string' }));
}

function Enum<T extends TLiteral<string>[]>(literals: [...T], defaultValue: Static<T[number]>) {
  const expected = `one of ${literals.map((l) => JSON.stringify(l.const)).join(', ')}`;
  return Type.Union(literals, { default: defaultValue, [ExpectedKey]: expected });
}

function WsPath(defaultPath: string): TString {
  return Type.String({
    default: defaultPath,
    pattern: '^/[^\\s?#]*$',
    [ExpectedKey]: 'a URL path starting with "/" (no spaces, "?" or "#")',
  });
}

/** An object section: unknown keys are rejected, missing keys take their defaults. */
function Section<T extends Record<string, TSchema>>(properties: T) {
  return Type.Object(properties, { additionalProperties: false, default: {} });
}

// ---------------------------------------------------------------------------------
// Sections

/** The minimum of intervals and of the deadlines a peer must meet. */
const SECOND = 1000;

export const ListenSchema = Section({
  host: Str('127.0.0.1'),
  port: Int(7373, 0, 65535),
});

export const StoreSchema = Section({
  kind: Enum([Type.Literal('sqlite'), Type.Literal('memory'), Type.Literal('redis')], 'sqlite'),
  url: Type.Optional(Str()),
  prefix: Type.String({ default: 'muster:', [ExpectedKey]: 'a string' }),
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

export const ShardingSchema = Section({
  enabled: Bool(true),
  path: WsPath('/sharding'),
  authorization: Secret(),
  botToken: Type.Optional(Type.String({ minLength: 1, [SecretKey]: true, [ExpectedKey]: 'a non-empty string' })),
  shardCount: Int(16, 1),
  maxConcurrency: Int(1, 1),
  heartbeatInterval: Duration(30_000, SECOND),
  heartbeatGrace: Duration(15_000, 0),
  reconnectWindow: Duration(30_000, 0),
  startupDelay: Duration(45_000, 0),
  expectedControls: Int(0, 0),
  redundancy: Int(0, 0),
  startup: Enum([Type.Literal('sequential'), Type.Literal('parallel')], 'sequential'),
  connectTimeout: Duration(120_000, SECOND),
  identifyWindow: Duration(5_000, 100),
  identifyMargin: Duration(250, 0),
  sessionStartLimit: Int(1_000, 0),
  fenceMargin: Duration(5_000, 0),
  identifyTimeout: Duration(10_000, SECOND),
});

export const ClusterioSchema = Section({
  enabled: Bool(true),
  path: WsPath('/api/socket'),
  authSecret: Secret(),
  heartbeatInterval: Duration(15_000, SECOND),
  sessionTimeout: Duration(60_000, SECOND),
  preAuthMaxBytes: Bytes(16_384, 1024),
});

export const BusSchema = Section({
  enabled: Bool(true),
  path: WsPath('/bus'),
  token: Secret(),
  heartbeatInterval: Duration(30_000, SECOND),
  maxMessageBytes: Bytes(32_768),
  requestTimeout: Duration(10_000, 100),
  identifyTimeout: Duration(10_000, SECOND),
  maxBufferedBytes: Bytes(4_194_304),
  /** Per service: EVENTs and EVENT bytes a second (0: no limit); bursts of 2 s are allowed. */
  maxEventsPerSecond: Int(1000, 0),
  maxEventBytesPerSecond: Bytes(1_048_576, 0),
  preAuthMaxBytes: Bytes(16_384, 1024),
});

export const DiscodoSchema = Section({
  enabled: Bool(true),
  path: WsPath('/ws'),
  password: Secret(),
  heartbeatInterval: Duration(15_000, SECOND),
  vcTimeout: Duration(300_000, SECOND),
  handshakeTimeout: Duration(60_000, SECOND),
  compat: Enum([Type.Literal('seed'), Type.Literal('discodo-3')], 'seed'),
});

export const GamelistSchema = Section({
  enabled: Bool(true),
  path: WsPath('/v2/server/ws'),
  regTokens: Type.Optional(
    Type.Array(Type.String({ minLength: 1, [SecretKey]: true, [ExpectedKey]: 'a non-empty string' }), {
      minItems: 1,
      [SecretKey]: true,
      [ExpectedKey]: 'a non-empty list of non-empty strings',
    }),
  ),
  registrationTtl: Duration(30_000, SECOND),
  pingInterval: Duration(10_000, SECOND),
  pongTimeout: Duration(20_000, SECOND),
  joinTimeout: Duration(5_000, 100),
  maxServers: Int(10_000, 1),
  maxServersPerIp: Int(25, 1),
  maxFailedRegistrations: Int(5, 1),
  publicRatePerIpPerMinute: Int(1_200, 1),
  preAuthMaxBytes: Bytes(16_384, 1024),
});

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
    store: StoreSchema,
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
