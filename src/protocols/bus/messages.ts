/**
 * The bus dialect's wire format (contract: specs/bus.md). Pure data and pure
 * functions: no I/O. The client and the server both use it.
 */

import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { tooDeep, TOO_DEEP_DETAIL } from '../json.js';

export const Op = {
  EVENT: 0,
  IDENTIFY: 1,
  DISCONNECT: 2,
  PING: 3,
  PONG: 4,
  REPLY: 5,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];
export type OpName = keyof typeof Op;

export const OP_NAMES = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k])) as Record<OpCode, OpName>;

/** What each op carries, for the docs' opcode table (`renderOpcodeTable`). Every op goes both ways. */
export const OP_DOCS = {
  EVENT: 'an event, routed by `intent`; delivered unchanged plus `source`',
  IDENTIFY: 'client: `{token?, group?, groups?, name?}`; server: `{id, heartbeat_interval}` (ms)',
  DISCONNECT: '`{reason, detail?}`; from a client it is a clean goodbye (close 1000)',
  PING: 'the server sends one every `heartbeat_interval`; answer with PONG. A client PING gets a PONG',
  PONG: 'answer to PING',
  REPLY: 'answers the EVENT with the same `id`; the server also uses it for `NO_ROUTE`, `TIMEOUT`, `RATE_LIMITED` and `REPLY_END`',
} as const satisfies Record<OpName, string>;

/** The opcode table of docs/dialects/bus.md, generated from `Op` and `OP_DOCS`. */
export function renderOpcodeTable(): string {
  const rows = (Object.keys(Op) as OpName[]).map((name) => `| ${Op[name]} | ${name} | both | ${OP_DOCS[name]} |`);
  return ['| op | name | direction | what |', '|---|---|---|---|', ...rows].join('\n');
}

export const Targets = ['GLOBAL', 'GROUP', 'DIRECT'] as const;
const TargetSchema = Type.Union([Type.Literal('GLOBAL'), Type.Literal('GROUP'), Type.Literal('DIRECT')]);
export type Target = Static<typeof TargetSchema>;

// ---------------------------------------------------------------------------------
// Schemas. The wire schemas say which frames decode; the decoded types (nulls dropped,
// defaults filled in) are derived from the schemas below them.

/** An absent member and a JSON null mean the same: not given. */
const Nullable = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));
const NonEmpty = Type.String({ minLength: 1 });

/** An EVENT's routing. The seed lets a sender leave it out (or null): that means GLOBAL. */
const WireIntent = Type.Union([
  Type.Object({ target: Type.Literal('GLOBAL'), identifier: Nullable(Type.String()), self: Nullable(Type.Boolean()) }),
  Type.Object({ target: Type.Union([Type.Literal('GROUP'), Type.Literal('DIRECT')]), identifier: NonEmpty, self: Nullable(Type.Boolean()) }),
]);
/** `id` and `event`, on every op. */
const Common = { id: Nullable(Type.String()), event: Nullable(Type.String()) };

/** The frames a service may send, by op. Unknown extra members are allowed (and relayed). */
export const Frames = {
  EVENT: Type.Object({
    op: Type.Literal(Op.EVENT),
    ...Common,
    intent: Nullable(WireIntent),
    /** Absent, null, false or 0: no reply wanted; true: one; a count; or every receiver. Needs an `id`. */
    expect_reply: Type.Optional(Type.Union([Type.Null(), Type.Boolean(), Type.Literal('all'), Type.Integer({ minimum: 0 })])),
    data: Type.Optional(Type.Unknown()),
  }),
  IDENTIFY: Type.Object({
    op: Type.Literal(Op.IDENTIFY),
    ...Common,
    data: Nullable(
      Type.Object({
        token: Nullable(Type.String()),
        group: Nullable(NonEmpty),
        groups: Nullable(Type.Array(NonEmpty)),
        name: Nullable(NonEmpty),
      }),
    ),
  }),
  DISCONNECT: Type.Object({ op: Type.Literal(Op.DISCONNECT), ...Common, data: Type.Optional(Type.Unknown()) }),
  PING: Type.Object({ op: Type.Literal(Op.PING), ...Common }),
  PONG: Type.Object({ op: Type.Literal(Op.PONG), ...Common }),
  /** `intent` is not checked: a DIRECT one names the requester (`to`); anything else is ignored. */
  REPLY: Type.Object({ op: Type.Literal(Op.REPLY), id: Type.String(), event: Nullable(Type.String()), intent: Type.Optional(Type.Unknown()), data: Type.Optional(Type.Unknown()) }),
} as const satisfies Record<OpName, TSchema>;

/** An intent as decoded. */
export const IntentSchema = Type.Object({
  target: TargetSchema,
  /** A group name, or a service's id or unique name. Absent for GLOBAL. */
  identifier: Type.Optional(Type.String()),
  /** GLOBAL and GROUP: deliver to the sender too. */
  self: Type.Optional(Type.Boolean()),
});
export type Intent = Static<typeof IntentSchema>;

/** How many replies an EVENT wants: a count, or every receiver. */
export const ExpectReplySchema = Type.Union([Type.Integer({ minimum: 1 }), Type.Literal('all')]);
export type ExpectReply = Static<typeof ExpectReplySchema>;

/** IDENTIFY's data as decoded. */
export const IdentifyDataSchema = Type.Object({
  token: Type.Optional(Type.String()),
  group: Type.Optional(NonEmpty),
  groups: Type.Optional(Type.Array(NonEmpty)),
  name: Type.Optional(NonEmpty),
});
export type IdentifyData = Static<typeof IdentifyDataSchema>;

/** Why the server says goodbye: the `reason` of a DISCONNECT it sends. */
export const DisconnectReason = {
  IDENTIFY_FAILED: 'IDENTIFY_FAILED',
  NOT_IDENTIFIED: 'NOT_IDENTIFIED',
  IDENTIFY_TIMEOUT: 'IDENTIFY_TIMEOUT',
  ALREADY_IDENTIFIED: 'ALREADY_IDENTIFIED',
  NAME_TAKEN: 'NAME_TAKEN',
  BAD_MESSAGE: 'BAD_MESSAGE',
  MESSAGE_TOO_BIG: 'MESSAGE_TOO_BIG',
  PING_TIMEOUT: 'PING_TIMEOUT',
  SLOW_CONSUMER: 'SLOW_CONSUMER',
  KICKED: 'KICKED',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  UNAVAILABLE: 'UNAVAILABLE',
} as const;
export type DisconnectReason = (typeof DisconnectReason)[keyof typeof DisconnectReason];

/** The close code that follows each DISCONNECT reason. */
export const closeCodeFor = {
  IDENTIFY_FAILED: 4004,
  NOT_IDENTIFIED: 4003,
  IDENTIFY_TIMEOUT: 4003,
  ALREADY_IDENTIFIED: 4002,
  NAME_TAKEN: 4004,
  BAD_MESSAGE: 4002,
  MESSAGE_TOO_BIG: 1009,
  PING_TIMEOUT: 4001,
  SLOW_CONSUMER: 4008,
  KICKED: 1008,
  SHUTTING_DOWN: 1001,
  UNAVAILABLE: 1013,
} as const satisfies Record<DisconnectReason, number>;

/** The bus close codes, for the docs and the catalogue. */
export const busCloseCodes = {
  1000: { name: 'GOODBYE', description: 'The client said DISCONNECT; the server removed it', retryable: true, why: 'peer closed' },
  1001: { name: 'SHUTTING_DOWN', description: 'DISCONNECT `SHUTTING_DOWN`: the server is stopping', retryable: true, why: 'shutdown' },
  1002: { name: 'PROTOCOL_ERROR', description: 'A WebSocket protocol error: a reserved bit or opcode, an unmasked or badly fragmented frame, a control frame over 125 bytes, an invalid close code (socket layer, no DISCONNECT first)', retryable: false },
  1007: { name: 'INVALID_UTF8', description: 'A text frame that is not UTF-8 (socket layer, no DISCONNECT)', retryable: false },
  1008: { name: 'KICKED', description: 'DISCONNECT `KICKED`: an operator kicked it (`DELETE /api/v1/connections/:id`)', retryable: true, why: 'kicked' },
  1009: { name: 'MESSAGE_TOO_BIG', description: 'DISCONNECT `MESSAGE_TOO_BIG`: a frame over `maxMessageBytes`, or over `preAuthMaxBytes` before IDENTIFY. No DISCONNECT: a frame over `limits.maxPayload`, or over 4 × `preAuthMaxBytes` before IDENTIFY (socket layer)', retryable: false, why: 'protocol error' },
  1013: { name: 'TRY_AGAIN_LATER', description: 'DISCONNECT `UNAVAILABLE`: IDENTIFY with a `name` while this instance cannot reach the cluster\'s Redis (cluster mode), so the name cannot be checked cluster-wide', retryable: true, why: 'refused' },
  4001: { name: 'PING_TIMEOUT', description: 'DISCONNECT `PING_TIMEOUT`: silent for two heartbeat intervals', retryable: true, why: 'ping timeout' },
  4002: { name: 'BAD_MESSAGE', description: 'DISCONNECT `BAD_MESSAGE` (+ `detail`): malformed JSON, not an object, wrong envelope, unknown op, binary frame. DISCONNECT `ALREADY_IDENTIFIED`: a second IDENTIFY on the same socket', retryable: false, why: 'protocol error' },
  4003: { name: 'NOT_IDENTIFIED', description: 'DISCONNECT `NOT_IDENTIFIED`: any op other than IDENTIFY or PING before IDENTIFY. DISCONNECT `IDENTIFY_TIMEOUT`: no IDENTIFY within `identifyTimeout`', retryable: true, why: 'protocol error' },
  4004: { name: 'IDENTIFY_FAILED', description: 'DISCONNECT `IDENTIFY_FAILED`: wrong or missing token. DISCONNECT `NAME_TAKEN`: IDENTIFY with a `name` another live service holds (the first keeps it)', retryable: false, why: 'refused' },
  4008: { name: 'SLOW_CONSUMER', description: 'DISCONNECT `SLOW_CONSUMER`: backlog over `maxBufferedBytes`', retryable: true, why: 'slow consumer' },
} as const;

/** Errors carried in a REPLY the server sends. */
export const ReplyError = {
  NO_ROUTE: 'NO_ROUTE',
  TIMEOUT: 'TIMEOUT',
  /** The sender is over its EVENT rate; the EVENT was not delivered (`retry_after` ms). */
  RATE_LIMITED: 'RATE_LIMITED',
} as const;

export const REPLY_END = 'REPLY_END';

/** An intent as decoded: every member present (`undefined` when not given). */
export interface DecodedIntent {
  readonly target: Target;
  readonly identifier: string | undefined;
  readonly self: boolean | undefined;
}

/**
 * A decoded frame. `raw` is the frame's text, kept so it can be relayed unchanged.
 * Every op has every member (`undefined` where it has none), and decode writes them all
 * in one order (object literals, no spread): the server's hot path then reads one object
 * shape, not one per op and per optional member present.
 */
interface Members {
  readonly id: string | undefined;
  readonly event: string | undefined;
  readonly data: unknown;
  readonly intent: DecodedIntent | undefined;
  readonly expectReply: ExpectReply | undefined;
  /** REPLY: the requester its DIRECT intent names. */
  readonly to: string | undefined;
  readonly raw: string;
}
export type BusMessage =
  | (Members & { readonly op: 0; readonly intent: DecodedIntent; readonly to: undefined })
  | (Members & { readonly op: 1; readonly data: IdentifyData; readonly event: undefined; readonly intent: undefined; readonly expectReply: undefined; readonly to: undefined })
  | (Members & { readonly op: 2 | 3 | 4; readonly id: undefined; readonly event: undefined; readonly intent: undefined; readonly expectReply: undefined; readonly to: undefined })
  | (Members & { readonly op: 5; readonly id: string; readonly intent: undefined; readonly expectReply: undefined });

export type DecodeResult = { ok: true; msg: BusMessage } | { ok: false; detail: string };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The compiled check of each op's frame, indexed by op. */
const CHECKS = [Frames.EVENT, Frames.IDENTIFY, Frames.DISCONNECT, Frames.PING, Frames.PONG, Frames.REPLY].map((f) => TypeCompiler.Compile(f));

/**
 * Parses and checks one text frame: the bus's one decode. The op's compiled schema
 * decides; a refused frame gets the contract's detail (`explain`). Numbers inside
 * `data` may be rounded by JSON.parse here, which is harmless: the server routes on
 * the envelope and relays `raw`, never a re-serialized copy.
 */
export function decode(text: string): DecodeResult {
  if (tooDeep(text)) return { ok: false, detail: TOO_DEEP_DETAIL };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return { ok: false, detail: `malformed JSON: ${(err as Error).message}` };
  }
  const check = isObj(v) && typeof v.op === 'number' ? CHECKS[v.op] : undefined;
  if (check === undefined || !check.Check(v)) return { ok: false, detail: explain(v) };
  const f = v as Static<(typeof Frames)[OpName]>;
  const id = typeof f.id === 'string' ? f.id : undefined;
  const event = typeof f.event === 'string' ? f.event : undefined;
  // Every literal below names the same members in the same order (one object shape).
  switch (f.op) {
    case Op.EVENT: {
      const er = f.expect_reply;
      const expectReply: ExpectReply | undefined = er === undefined || er === null || er === false || er === 0 ? undefined : er === true ? 1 : er;
      if (expectReply !== undefined && id === undefined) return { ok: false, detail: '"expect_reply" needs an "id"' };
      const w = f.intent;
      const intent: DecodedIntent = w
        ? { target: w.target, identifier: typeof w.identifier === 'string' ? w.identifier : undefined, self: typeof w.self === 'boolean' ? w.self : undefined }
        : { target: 'GLOBAL', identifier: undefined, self: undefined };
      return { ok: true, msg: { op: 0, id, event, data: f.data, intent, expectReply, to: undefined, raw: text } };
    }
    case Op.IDENTIFY: {
      const d = f.data ?? {};
      const data: IdentifyData = {};
      if (typeof d.token === 'string') data.token = d.token;
      if (typeof d.group === 'string') data.group = d.group;
      if (Array.isArray(d.groups)) data.groups = d.groups;
      if (typeof d.name === 'string') data.name = d.name;
      return { ok: true, msg: { op: 1, id, event: undefined, data, intent: undefined, expectReply: undefined, to: undefined, raw: text } };
    }
    case Op.DISCONNECT:
      return { ok: true, msg: { op: 2, id: undefined, event: undefined, data: f.data, intent: undefined, expectReply: undefined, to: undefined, raw: text } };
    case Op.PING:
    case Op.PONG:
      return { ok: true, msg: { op: f.op, id: undefined, event: undefined, data: undefined, intent: undefined, expectReply: undefined, to: undefined, raw: text } };
    case Op.REPLY: {
      // A REPLY addressed DIRECT to its requester (the seed's style) says which request
      // it answers when one service was asked the same id by several. Never an error.
      const named = isObj(f.intent) && f.intent.target === 'DIRECT' ? f.intent.identifier : undefined;
      const to = typeof named === 'string' ? named : undefined;
      return { ok: true, msg: { op: 5, id: f.id, event, data: f.data, intent: undefined, expectReply: undefined, to, raw: text } };
    }
  }
}

/**
 * Why a parsed frame fails its schema, in the contract's words (the BAD_MESSAGE
 * detail). Only ever called on a frame the schemas refused: the checks come in the
 * order the details have always been reported.
 */
function explain(v: unknown): string {
  if (!isObj(v)) return 'a frame must be a JSON object';
  const op = v.op;
  if (typeof op !== 'number' || !Number.isInteger(op)) return '"op" must be an integer';
  if (v.id !== undefined && v.id !== null && typeof v.id !== 'string') return '"id" must be a string';
  if (v.event !== undefined && v.event !== null && typeof v.event !== 'string') return '"event" must be a string';
  switch (op) {
    case Op.EVENT: {
      const intent = explainIntent(v.intent);
      if (intent !== undefined) return intent;
      return '"expect_reply" must be a positive integer, true, or "all"';
    }
    case Op.IDENTIFY: {
      const d = v.data ?? {};
      if (!isObj(d)) return 'IDENTIFY "data" must be an object';
      if (d.token !== undefined && d.token !== null && typeof d.token !== 'string') return '"data.token" must be a string';
      if (d.group !== undefined && d.group !== null && (typeof d.group !== 'string' || d.group === '')) return '"data.group" must be a non-empty string';
      if (d.groups !== undefined && d.groups !== null && (!Array.isArray(d.groups) || !d.groups.every((g) => typeof g === 'string' && g !== ''))) {
        return '"data.groups" must be an array of non-empty strings';
      }
      return '"data.name" must be a non-empty string';
    }
    case Op.REPLY:
      return 'REPLY needs an "id"';
    default:
      return `unknown op ${op}`;
  }
}

function explainIntent(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObj(v)) return '"intent" must be an object';
  const target = v.target;
  if (typeof target !== 'string' || !(Targets as readonly string[]).includes(target)) return '"intent.target" must be GLOBAL, GROUP or DIRECT';
  if (v.identifier !== undefined && v.identifier !== null && typeof v.identifier !== 'string') return '"intent.identifier" must be a string';
  if (target !== 'GLOBAL' && (typeof v.identifier !== 'string' || v.identifier === '')) return `"intent.identifier" is required for ${target}`;
  if (v.self !== undefined && v.self !== null && typeof v.self !== 'boolean') return '"intent.self" must be a boolean';
  return undefined;
}

/**
 * The sender's frame, unchanged, with `"source": <id>` added. The text is spliced,
 * not re-serialized, so numbers beyond 2^53 keep their digits. The key is added
 * last, so it wins over any `source` the sender put in.
 */
export function withSource(raw: string, source: string): string {
  const end = raw.lastIndexOf('}');
  const head = raw.slice(0, end).trimEnd();
  const empty = head.endsWith('{');
  return `${head}${empty ? '' : ','}"source":${JSON.stringify(source)}}`;
}

export const encode = {
  identified: (id: string, heartbeatInterval: number): string =>
    JSON.stringify({ op: Op.IDENTIFY, data: { id, heartbeat_interval: heartbeatInterval } }),
  disconnect: (reason: DisconnectReason, detail?: string): string =>
    JSON.stringify({ op: Op.DISCONNECT, data: detail === undefined ? { reason } : { reason, detail } }),
  ping: (): string => '{"op":3}',
  pong: (): string => '{"op":4}',
  replyError: (id: string | undefined, error: string, extra: Record<string, unknown> = {}): string =>
    JSON.stringify({ op: Op.REPLY, id, data: { error, ...extra } }),
  replyEnd: (id: string, received: number, expected: number, missing: string[]): string =>
    JSON.stringify({ op: Op.REPLY, id, event: REPLY_END, data: { received, expected, missing } }),
};
