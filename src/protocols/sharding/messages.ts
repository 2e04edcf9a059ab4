/**
 * The sharding dialect's wire format (contract: specs/sharding.md). Pure data and
 * pure functions: no I/O. The MASTER (src/dialects/sharding) and the CONTROL client
 * (src/client/sharding.ts) both use it.
 *
 * Every frame is a JSON text frame `{"o": <int opcode>, "d": <object or null>}`.
 * Each opcode's payload has a TypeBox schema below; the TypeScript types are derived
 * from the schemas, and the docs' opcode table is rendered from them
 * (`renderOpcodeTable`).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { isSafeNumber, LosslessNumber, parse as losslessParse, stringify as losslessStringify } from 'lossless-json';
import { parseJson, scanJson, TOO_DEEP_DETAIL } from '../json.js';
import type { Range } from './ranges.js';

export type { Range } from './ranges.js';

export const Op = {
  INFO: 0,
  FATAL: 1,
  COMMAND: 2,
  OFFLOAD: 3,
  SHUTDOWN: 4,
  INITIALISE: 5,
  CONNECT: 6,
  ERROR: 7,
  ACK: 8,
  HEARTBEAT: 9,
  IDENTIFY: 10,
  CONNECTING: 11,
  CONNECTED: 12,
  IDENTIFY_REQUEST: 13,
  IDENTIFY_GRANT: 14,
  IDENTIFIED: 15,
  IDENTIFY_CANCEL: 16,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];
export type OpName = keyof typeof Op;
export const OP_NAMES = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k])) as Record<OpCode, OpName>;

/** Close codes the MASTER sends (HTTP 401 is an upgrade refusal, not a close). */
export const CloseCodes = {
  SHUTTING_DOWN: 1001,
  DEAD_CONNECTION: 4001,
  IDENTIFY_TIMEOUT: 4002,
  NAME_IN_USE: 4003,
  MALFORMED: 4004,
  SUPERSEDED: 4005,
  HALTED: 4006,
} as const;

/** `ERROR {code}` for a protocol violation that does not close the socket. */
export const PROTOCOL_VIOLATION = 4009;

/** Discord gateway close codes that must not be retried: a CONTROL reports them with FATAL. */
export const FATAL_DISCORD_CODES: readonly number[] = [4004, 4010, 4011, 4012, 4013, 4014];

export const shardingCloseCodes = {
  1001: { name: 'SHUTTING_DOWN', description: 'MASTER is shutting down (no SHUTDOWN: assignments are kept)', retryable: true, why: 'shutdown', retry: 'reconnect with its `session_id` and `shards`' },
  1002: { name: 'PROTOCOL_ERROR', description: 'A WebSocket protocol error: a reserved bit or opcode, an unmasked or badly fragmented frame, a control frame over 125 bytes, an invalid close code (socket layer, no ERROR first)', retryable: false, retry: 'fix the client' },
  1007: { name: 'INVALID_UTF8', description: 'A text frame that is not UTF-8 (socket layer, no ERROR first)', retryable: false, retry: 'fix the client' },
  1008: { name: 'KICKED', description: 'Kicked by an operator (`DELETE /api/v1/connections/:id`): a disconnect like any other', retryable: true, why: 'kicked', retry: 'reconnect' },
  1009: { name: 'MESSAGE_TOO_BIG', description: 'A frame over `limits.maxPayload` (socket layer). There is no smaller pre-authentication cap: a CONTROL authenticates on the upgrade (`Authorization`), so no frame is read before it', retryable: false, retry: 'fix the client' },
  4001: { name: 'DEAD_CONNECTION', description: 'Dead connection: no HEARTBEAT for `heartbeatInterval + heartbeatGrace`, or not CONNECTED within `connectTimeout` (then SHUTDOWN came first). Its shards were offloaded at once', retryable: true, why: 'ping timeout', retry: 'stop everything; reconnect as new' },
  4002: { name: 'IDENTIFY_TIMEOUT', description: 'No valid IDENTIFY within `identifyTimeout` of INITIALISE', retryable: true, why: 'protocol error', retry: 'reconnect' },
  4003: { name: 'NAME_IN_USE', description: 'A CONTROL with that name is connected, and the IDENTIFY did not carry its live `session_id`', retryable: true, why: 'name in use', retry: 'another host uses the name, or retry once the old socket is gone' },
  4004: { name: 'MALFORMED', description: 'Malformed packet: bad JSON, JSON nested deeper than 128 levels, bad envelope, unknown opcode (including MASTER-only opcodes), a payload that fails its schema, a binary frame (ERROR first)', retryable: true, why: 'protocol error', retry: 'fix the client' },
  4005: { name: 'SUPERSEDED', description: 'Superseded: a newer connection with this CONTROL\'s `session_id` took over', retryable: false, why: 'superseded', retry: 'do not reconnect on this socket\'s behalf' },
  4006: { name: 'HALTED', description: 'The fleet is halted (FATAL or an operator); SHUTDOWN came first', retryable: true, why: 'halted', retry: 'stop everything; retry later; nothing starts until an operator resumes' },
} as const;

// ---------------------------------------------------------------------------------
// Schemas

const Int0 = (description?: string) => Type.Integer({ minimum: 0, ...(description ? { description } : {}) });
export const RangeSchema = Type.Tuple([Int0(), Int0()], { title: 'range', description: '[first, last], inclusive' });
const Ranges = Type.Array(RangeSchema, { title: 'ranges' });

export const Schemas = {
  INFO: Type.Object({
    shards: Type.Optional(
      Type.Array(
        Type.Object({
          id: Int0(),
          status: Type.Union([Type.String(), Type.Number()]),
          latency_ms: Type.Optional(Type.Number()),
          guilds: Type.Optional(Int0()),
        }),
      ),
    ),
    load: Type.Optional(Type.Number()),
    memory_mb: Type.Optional(Type.Number()),
  }),
  FATAL: Type.Object({ code: Type.Integer(), message: Type.Optional(Type.String()) }),
  COMMAND: Type.Object({ command: Type.String({ minLength: 1 }), args: Type.Record(Type.String(), Type.Unknown()) }),
  OFFLOAD: Type.Object({
    shards: Ranges,
    reason: Type.Union([Type.Literal('failover'), Type.Literal('rebalance')]),
    from: Type.Optional(Type.String()),
  }),
  SHUTDOWN: Type.Object({ reason: Type.String(), shards: Type.Optional(Ranges) }),
  INITIALISE: Type.Object({
    token: Type.String(),
    heartbeat_interval: Int0('ms'),
    shard_count: Type.Integer({ minimum: 1 }),
    max_concurrency: Type.Integer({ minimum: 1 }),
    session_id: Type.String(),
    // Beyond the seed (additive): the MASTER's liveness timing, so a CONTROL fences on it.
    heartbeat_grace: Type.Optional(Int0('ms')),
    reconnect_window: Type.Optional(Int0('ms')),
    fence_margin: Type.Optional(Int0('ms')),
  }),
  CONNECT: Type.Object({
    shardRange: Type.Union([Type.Tuple([], { title: '[]' }), RangeSchema]),
    shards: Ranges,
    redundant: Type.Boolean(),
  }),
  ERROR: Type.Object({ code: Type.Integer(), message: Type.Optional(Type.String()) }),
  HEARTBEAT: Type.Object({ seq: Type.Optional(Type.Unknown({ description: 'echoed in ACK' })) }),
  IDENTIFY: Type.Object({
    name: Type.String({ minLength: 1, maxLength: 128 }),
    capacity: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000 })),
    shards: Type.Optional(Ranges),
    session_id: Type.Optional(Type.String({ maxLength: 256 })),
    features: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 64 })),
  }),
  CONNECTED: Type.Object({ shards: Ranges }),
  IDENTIFY_REQUEST: Type.Object({ shard_id: Int0() }),
  IDENTIFY_GRANT: Type.Object({ shard_id: Int0() }),
  IDENTIFIED: Type.Object({ resumed: Type.Boolean(), shards: Ranges, redundant: Type.Boolean() }),
  IDENTIFY_CANCEL: Type.Object({ shard_id: Int0() }),
} as const;

export type InfoPayload = Static<typeof Schemas.INFO>;
export type FatalPayload = Static<typeof Schemas.FATAL>;
export type CommandPayload = Static<typeof Schemas.COMMAND>;
export type OffloadPayload = Static<typeof Schemas.OFFLOAD>;
export type ShutdownPayload = Static<typeof Schemas.SHUTDOWN>;
export type InitialisePayload = Static<typeof Schemas.INITIALISE>;
export type ConnectPayload = Static<typeof Schemas.CONNECT>;
export type ErrorPayload = Static<typeof Schemas.ERROR>;
export type HeartbeatPayload = Static<typeof Schemas.HEARTBEAT>;
export type IdentifyPayload = Static<typeof Schemas.IDENTIFY>;
export type ConnectedPayload = Static<typeof Schemas.CONNECTED>;
export type IdentifyRequestPayload = Static<typeof Schemas.IDENTIFY_REQUEST>;
export type IdentifyGrantPayload = Static<typeof Schemas.IDENTIFY_GRANT>;
export type IdentifiedPayload = Static<typeof Schemas.IDENTIFIED>;
export type IdentifyCancelPayload = Static<typeof Schemas.IDENTIFY_CANCEL>;

export type Direction = 'C→M' | 'M→C' | 'both';

export interface OpSpec {
  readonly op: OpCode;
  readonly name: OpName;
  readonly direction: Direction;
  /** The payload's schema; `null` when `d` is always null, `'any'` when it is free (ACK echoes). */
  readonly schema: TSchema | null | 'any';
  /** Whether `d` may be null (an absent payload). */
  readonly nullable: boolean;
  readonly summary: string;
}

/** The contract's opcode table, as data. */
export const OPS: readonly OpSpec[] = [
  { op: 0, name: 'INFO', direction: 'C→M', schema: Schemas.INFO, nullable: true, summary: 'Telemetry, sent at will; stored for the admin API' },
  { op: 1, name: 'FATAL', direction: 'C→M', schema: Schemas.FATAL, nullable: false, summary: 'A shard hit a Discord close code that must not be retried (4004, 4010-4014): MASTER halts the fleet' },
  { op: 2, name: 'COMMAND', direction: 'M→C', schema: Schemas.COMMAND, nullable: false, summary: 'Relayed from the admin API: `restart_shard {shard_id}`, `restart_cluster {shards}`' },
  { op: 3, name: 'OFFLOAD', direction: 'M→C', schema: Schemas.OFFLOAD, nullable: false, summary: 'Start serving these shards in addition' },
  { op: 4, name: 'SHUTDOWN', direction: 'M→C', schema: Schemas.SHUTDOWN, nullable: false, summary: 'Stop the listed shards, or every shard when `shards` is absent' },
  { op: 5, name: 'INITIALISE', direction: 'M→C', schema: Schemas.INITIALISE, nullable: false, summary: 'Sent as soon as the socket opens; `heartbeat_grace`, `reconnect_window` and `fence_margin` (ms) are the timing a CONTROL fences on' },
  { op: 6, name: 'CONNECT', direction: 'M→C', schema: Schemas.CONNECT, nullable: false, summary: 'Connect your clusters (standbys get `shardRange: [], shards: [], redundant: true`)' },
  { op: 7, name: 'ERROR', direction: 'both', schema: Schemas.ERROR, nullable: false, summary: 'An error; 4009 = protocol violation, the socket stays open' },
  { op: 8, name: 'ACK', direction: 'M→C', schema: 'any', nullable: true, summary: "Heartbeat acknowledgement, echoing the HEARTBEAT's `d`" },
  { op: 9, name: 'HEARTBEAT', direction: 'C→M', schema: Schemas.HEARTBEAT, nullable: true, summary: 'Every `heartbeat_interval` ms' },
  { op: 10, name: 'IDENTIFY', direction: 'C→M', schema: Schemas.IDENTIFY, nullable: false, summary: 'Right after INITIALISE; `shards` lists what a reconnecting CONTROL still serves' },
  { op: 11, name: 'CONNECTING', direction: 'C→M', schema: null, nullable: true, summary: 'Right after CONNECT or OFFLOAD arrives: clusters are being started' },
  { op: 12, name: 'CONNECTED', direction: 'C→M', schema: Schemas.CONNECTED, nullable: false, summary: 'Every assigned shard is connected' },
  { op: 13, name: 'IDENTIFY_REQUEST', direction: 'C→M', schema: Schemas.IDENTIFY_REQUEST, nullable: false, summary: 'Ask for a Discord identify slot' },
  { op: 14, name: 'IDENTIFY_GRANT', direction: 'M→C', schema: Schemas.IDENTIFY_GRANT, nullable: false, summary: 'Identify now' },
  { op: 15, name: 'IDENTIFIED', direction: 'M→C', schema: Schemas.IDENTIFIED, nullable: false, summary: 'Reply to IDENTIFY' },
  { op: 16, name: 'IDENTIFY_CANCEL', direction: 'C→M', schema: Schemas.IDENTIFY_CANCEL, nullable: false, summary: 'Withdraw a waiting IDENTIFY_REQUEST (beyond the seed); no grant follows for it' },
];

const compiled = new Map<TSchema, TypeCheck<TSchema>>();
function checker(schema: TSchema): TypeCheck<TSchema> {
  let c = compiled.get(schema);
  if (!c) compiled.set(schema, (c = TypeCompiler.Compile(schema)));
  return c;
}

// ---------------------------------------------------------------------------------
// Decoding

/** A frame from a CONTROL, checked against its schema. */
export type ControlFrame =
  | { readonly o: 0; readonly d: InfoPayload; /** `d` as text, numbers verbatim. */ readonly raw: string }
  | { readonly o: 1; readonly d: FatalPayload }
  | { readonly o: 7; readonly d: ErrorPayload }
  | { readonly o: 9; readonly d: HeartbeatPayload | null; /** `d` as text, to echo in ACK. */ readonly raw: string }
  | { readonly o: 10; readonly d: IdentifyPayload }
  | { readonly o: 11; readonly d: unknown }
  | { readonly o: 12; readonly d: ConnectedPayload }
  | { readonly o: 13; readonly d: IdentifyRequestPayload }
  | { readonly o: 16; readonly d: IdentifyCancelPayload };

/** A frame from the MASTER, checked against its schema. */
export type MasterFrame =
  | { readonly o: 2; readonly d: CommandPayload }
  | { readonly o: 3; readonly d: OffloadPayload }
  | { readonly o: 4; readonly d: ShutdownPayload }
  | { readonly o: 5; readonly d: InitialisePayload }
  | { readonly o: 6; readonly d: ConnectPayload }
  | { readonly o: 7; readonly d: ErrorPayload }
  | { readonly o: 8; readonly d: unknown }
  | { readonly o: 14; readonly d: IdentifyGrantPayload }
  | { readonly o: 15; readonly d: IdentifiedPayload };

export type Decoded<T> = { readonly ok: true; readonly frame: T } | { readonly ok: false; readonly detail: string };

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof LosslessNumber);

/** Integers beyond 2^53 stay LosslessNumber (digits kept); everything else is a JS number. */
function parseNumber(text: string): number | LosslessNumber {
  if (/^-?\d+$/.test(text) && !isSafeNumber(text)) return new LosslessNumber(text);
  return Number(text);
}

/** JSON text with integers beyond 2^53 written back digit for digit. */
export function losslessText(value: unknown): string {
  return losslessStringify(value) ?? 'null';
}

interface Envelope {
  o: number;
  d: Record<string, unknown> | null;
}

export function decodeEnvelope(text: string): Decoded<Envelope> {
  const scan = scanJson(text);
  if (scan.tooDeep) return { ok: false, detail: TOO_DEEP_DETAIL };
  let v: unknown;
  try {
    // JSON.parse does the work; numbers it would change are restored as parseNumber reads them.
    v = parseJson(text, scan, (t) => losslessParse(t, null, parseNumber), parseNumber);
  } catch (err) {
    return { ok: false, detail: `malformed JSON: ${(err as Error).message}` };
  }
  if (!isObj(v)) return { ok: false, detail: 'a frame must be a JSON object {"o": int, "d": object|null}' };
  const o = v.o;
  if (typeof o !== 'number' || !Number.isInteger(o)) return { ok: false, detail: '"o" must be an integer opcode' };
  if (!('d' in v)) return { ok: false, detail: '"d" is missing (use null for no payload)' };
  const d = v.d;
  if (d !== null && !isObj(d)) return { ok: false, detail: '"d" must be an object or null' };
  return { ok: true, frame: { o, d } };
}

const BY_OP = new Map<number, OpSpec>(OPS.map((s) => [s.op, s]));

function checkPayload(spec: OpSpec, d: Record<string, unknown> | null): string | undefined {
  if (d === null) return spec.nullable ? undefined : `${spec.name} needs a "d" object`;
  if (spec.schema === null || spec.schema === 'any') return undefined;
  // An optional field sent as null means "absent".
  for (const [k, val] of Object.entries(d)) if (val === null) delete d[k];
  const c = checker(spec.schema);
  // INFO is telemetry kept verbatim: an integer beyond 2^53 is still an integer there.
  const subject = spec.op === Op.INFO ? numbersForCheck(d) : d;
  if (!c.Check(subject)) {
    const first = c.Errors(subject).First();
    return `${spec.name}: ${first ? `${first.path || '/'} ${first.message}` : 'payload does not match its schema'}`;
  }
  const bad = findBadRange(d);
  if (bad) return `${spec.name}: ${bad}`;
  return undefined;
}

/** A copy with every LosslessNumber as a JS number, for schema checks only. */
function numbersForCheck(v: unknown): unknown {
  if (v instanceof LosslessNumber) return Number(v.value);
  if (Array.isArray(v)) return v.map(numbersForCheck);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, numbersForCheck(x)]));
  return v;
}

/** Every range in a payload must have first <= last. */
function findBadRange(d: Record<string, unknown>): string | undefined {
  for (const key of ['shards', 'shardRange']) {
    const v = d[key];
    if (!Array.isArray(v)) continue;
    const list = key === 'shardRange' ? (v.length === 2 ? [v] : []) : v;
    for (const r of list as unknown[]) {
      if (Array.isArray(r) && typeof r[0] === 'number' && typeof r[1] === 'number' && r[0] > r[1]) {
        return `/${key} range [${r[0]}, ${r[1]}] has first > last`;
      }
    }
  }
  return undefined;
}

function decodeFor(text: string, accept: (spec: OpSpec) => boolean): Decoded<{ o: number; d: unknown; raw: string }> {
  const env = decodeEnvelope(text);
  if (!env.ok) return env;
  const { o, d } = env.frame;
  const spec = BY_OP.get(o);
  if (!spec || !accept(spec)) return { ok: false, detail: `unknown opcode ${o}` };
  const raw = spec.op === Op.INFO || spec.op === Op.HEARTBEAT || spec.op === Op.ACK ? losslessText(d) : '';
  const problem = checkPayload(spec, d);
  if (problem) return { ok: false, detail: problem };
  return { ok: true, frame: { o, d: d ?? (spec.op === Op.INFO ? {} : null), raw } };
}

/** Decodes a frame a CONTROL sent (MASTER side). M→C opcodes are unknown here. */
export function decodeControlFrame(text: string): Decoded<ControlFrame> {
  return decodeFor(text, (s) => s.direction !== 'M→C') as Decoded<ControlFrame>;
}

/** Decodes a frame the MASTER sent (CONTROL side). */
export function decodeMasterFrame(text: string): Decoded<MasterFrame> {
  return decodeFor(text, (s) => s.direction !== 'C→M') as Decoded<MasterFrame>;
}

// ---------------------------------------------------------------------------------
// Encoding

function frame(o: OpCode, d: unknown): string {
  return JSON.stringify({ o, d });
}

/** Frames the MASTER sends. */
export const encodeMaster = {
  command: (d: CommandPayload): string => frame(Op.COMMAND, d),
  offload: (d: OffloadPayload): string => frame(Op.OFFLOAD, d),
  shutdown: (d: ShutdownPayload): string => frame(Op.SHUTDOWN, d),
  initialise: (d: InitialisePayload): string => frame(Op.INITIALISE, d),
  connect: (d: ConnectPayload): string => frame(Op.CONNECT, d),
  error: (code: number, message: string): string => frame(Op.ERROR, { code, message }),
  /** ACK with the HEARTBEAT's `d` spliced in as it came (big numbers keep their digits). */
  ack: (rawD: string): string => `{"o":${Op.ACK},"d":${rawD}}`,
  grant: (shardId: number): string => frame(Op.IDENTIFY_GRANT, { shard_id: shardId }),
  identified: (d: IdentifiedPayload): string => frame(Op.IDENTIFIED, d),
};

/** Frames a CONTROL sends. */
export const encodeControl = {
  info: (d: InfoPayload | Record<string, unknown>): string => `{"o":${Op.INFO},"d":${losslessText(d)}}`,
  fatal: (d: FatalPayload): string => frame(Op.FATAL, d),
  error: (code: number, message: string): string => frame(Op.ERROR, { code, message }),
  heartbeat: (seq?: number): string => frame(Op.HEARTBEAT, seq === undefined ? null : { seq }),
  identify: (d: IdentifyPayload): string => frame(Op.IDENTIFY, d),
  connecting: (): string => frame(Op.CONNECTING, null),
  connected: (shards: Range[]): string => frame(Op.CONNECTED, { shards }),
  identifyRequest: (shardId: number): string => frame(Op.IDENTIFY_REQUEST, { shard_id: shardId }),
  identifyCancel: (shardId: number): string => frame(Op.IDENTIFY_CANCEL, { shard_id: shardId }),
};

// ---------------------------------------------------------------------------------
// Documentation, rendered from the schemas

/** A compact, readable rendering of a payload schema: `{name: string, capacity?: number}`. */
export function renderSchema(schema: TSchema): string {
  const s = schema as TSchema & Record<string, unknown>;
  if (s.title === 'range') return '[first, last]';
  if (s.title === 'ranges') return '[[first, last], …]';
  if (s.title === '[]') return '[]';
  if (Array.isArray(s.anyOf)) return (s.anyOf as TSchema[]).map(renderSchema).join(' \\| ');
  if ('const' in s) return JSON.stringify(s.const);
  switch (s.type) {
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, TSchema>;
      const required = new Set((s.required ?? []) as string[]);
      const keys = Object.keys(props);
      if (keys.length === 0) return '{…}';
      return `{${keys.map((k) => `${k}${required.has(k) ? '' : '?'}: ${renderSchema(props[k] as TSchema)}`).join(', ')}}`;
    }
    case 'array':
      return Array.isArray(s.items) ? `[${(s.items as TSchema[]).map(renderSchema).join(', ')}]` : `[${renderSchema(s.items as TSchema)}, …]`;
    case 'integer':
      return 'int';
    case 'number':
      return 'number';
    case 'string':
      return 'string';
    case 'boolean':
      return 'bool';
    case 'null':
      return 'null';
    default:
      return 'any';
  }
}

/** The opcode table of docs/dialects/sharding.md, generated from `OPS`. */
export function renderOpcodeTable(): string {
  const rows = OPS.map((s) => {
    const d = s.schema === null ? 'null' : s.schema === 'any' ? 'the HEARTBEAT\'s `d`' : `\`${renderSchema(s.schema)}\`${s.nullable ? ' or null' : ''}`;
    return `| ${s.op} | ${s.name} | ${s.direction} | ${d} | ${s.summary} |`;
  });
  return ['| o | name | direction | d | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}
