/**
 * The bus dialect's wire format (contract: specs/bus.md). Pure data and pure
 * functions: no I/O. The client and the server both use it.
 */

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

export const Targets = ['GLOBAL', 'GROUP', 'DIRECT'] as const;
export type Target = (typeof Targets)[number];

export interface Intent {
  target: Target;
  /** A group name, or a service's id or unique name. Absent (or null) for GLOBAL. */
  identifier?: string;
  /** GLOBAL and GROUP: deliver to the sender too. */
  self?: boolean;
}

/** How many replies an EVENT wants: a count, or every receiver. */
export type ExpectReply = number | 'all';

export interface IdentifyData {
  token?: string;
  group?: string;
  groups?: string[];
  name?: string;
}

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
} as const satisfies Record<DisconnectReason, number>;

/** The bus close codes, for the docs and the catalogue. */
export const busCloseCodes = {
  1000: { name: 'GOODBYE', description: 'The client sent DISCONNECT; the server removed it', retryable: true, why: 'peer closed' },
  1001: { name: 'SHUTTING_DOWN', description: 'The server is shutting down (DISCONNECT SHUTTING_DOWN first)', retryable: true, why: 'shutdown' },
  1007: { name: 'INVALID_UTF8', description: 'A text frame that is not UTF-8 (socket layer, no DISCONNECT)', retryable: false },
  1008: { name: 'KICKED', description: 'An operator kicked the service (DISCONNECT KICKED first)', retryable: true, why: 'kicked' },
  1009: {
    name: 'MESSAGE_TOO_BIG',
    description:
      'A frame over maxMessageBytes, or over preAuthMaxBytes before IDENTIFY (DISCONNECT MESSAGE_TOO_BIG first); over limits.maxPayload, or 4 × preAuthMaxBytes before IDENTIFY, the socket layer closes with no DISCONNECT',
    retryable: false,
    why: 'protocol error',
  },
  4001: { name: 'PING_TIMEOUT', description: 'Nothing received for two heartbeat intervals', retryable: true, why: 'ping timeout' },
  4002: { name: 'BAD_MESSAGE', description: 'Malformed JSON, not an object, wrong envelope, unknown op, binary frame, or a second IDENTIFY', retryable: false, why: 'protocol error' },
  4003: { name: 'NOT_IDENTIFIED', description: 'An op other than IDENTIFY or PING before IDENTIFY, or no IDENTIFY within identifyTimeout', retryable: true, why: 'protocol error' },
  4004: { name: 'IDENTIFY_FAILED', description: 'Wrong or missing token, or a name already in use', retryable: false, why: 'refused' },
  4008: { name: 'SLOW_CONSUMER', description: 'The unsent backlog passed maxBufferedBytes', retryable: true, why: 'slow consumer' },
} as const;

/** Errors carried in a REPLY the server sends. */
export const ReplyError = {
  NO_ROUTE: 'NO_ROUTE',
  TIMEOUT: 'TIMEOUT',
  /** The sender is over its EVENT rate; the EVENT was not delivered (`retry_after` ms). */
  RATE_LIMITED: 'RATE_LIMITED',
} as const;

export const REPLY_END = 'REPLY_END';

/** A decoded frame. `raw` is the frame's text, kept so it can be relayed unchanged. */
export type BusMessage =
  | { op: 0; id?: string; event?: string; data?: unknown; intent: Intent; expectReply?: ExpectReply; raw: string }
  | { op: 1; id?: string; data: IdentifyData; raw: string }
  | { op: 2; data?: unknown; raw: string }
  | { op: 3; raw: string }
  | { op: 4; raw: string }
  | { op: 5; id: string; event?: string; data?: unknown; to?: string; raw: string };

export type DecodeResult = { ok: true; msg: BusMessage } | { ok: false; detail: string };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Parses and checks one text frame. Numbers inside `data` may be rounded by
 * JSON.parse here, which is harmless: the server routes on the envelope and relays
 * `raw`, never a re-serialized copy.
 */
export function decode(text: string): DecodeResult {
  if (tooDeep(text)) return { ok: false, detail: TOO_DEEP_DETAIL };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return { ok: false, detail: `malformed JSON: ${(err as Error).message}` };
  }
  if (!isObj(v)) return { ok: false, detail: 'a frame must be a JSON object' };
  const op = v.op;
  if (typeof op !== 'number' || !Number.isInteger(op)) return { ok: false, detail: '"op" must be an integer' };
  if (v.id !== undefined && v.id !== null && typeof v.id !== 'string') return { ok: false, detail: '"id" must be a string' };
  const id = typeof v.id === 'string' ? v.id : undefined;
  if (v.event !== undefined && v.event !== null && typeof v.event !== 'string') return { ok: false, detail: '"event" must be a string' };
  const event = typeof v.event === 'string' ? v.event : undefined;
  switch (op) {
    case Op.EVENT: {
      const intent = decodeIntent(v.intent);
      if (typeof intent === 'string') return { ok: false, detail: intent };
      const er = v.expect_reply;
      let expectReply: ExpectReply | undefined;
      if (er === undefined || er === null || er === false || er === 0) expectReply = undefined;
      else if (er === true) expectReply = 1;
      else if (er === 'all') expectReply = 'all';
      else if (typeof er === 'number' && Number.isInteger(er) && er > 0) expectReply = er;
      else return { ok: false, detail: '"expect_reply" must be a positive integer, true, or "all"' };
      if (expectReply !== undefined && id === undefined) return { ok: false, detail: '"expect_reply" needs an "id"' };
      const msg: BusMessage = { op: 0, intent, raw: text };
      if (id !== undefined) msg.id = id;
      if (event !== undefined) msg.event = event;
      if ('data' in v) msg.data = v.data;
      if (expectReply !== undefined) msg.expectReply = expectReply;
      return { ok: true, msg };
    }
    case Op.IDENTIFY: {
      const d = v.data ?? {};
      if (!isObj(d)) return { ok: false, detail: 'IDENTIFY "data" must be an object' };
      const data: IdentifyData = {};
      if (d.token !== undefined && d.token !== null) {
        if (typeof d.token !== 'string') return { ok: false, detail: '"data.token" must be a string' };
        data.token = d.token;
      }
      if (d.group !== undefined && d.group !== null) {
        if (typeof d.group !== 'string' || d.group === '') return { ok: false, detail: '"data.group" must be a non-empty string' };
        data.group = d.group;
      }
      if (d.groups !== undefined && d.groups !== null) {
        if (!Array.isArray(d.groups) || !d.groups.every((g) => typeof g === 'string' && g !== '')) {
          return { ok: false, detail: '"data.groups" must be an array of non-empty strings' };
        }
        data.groups = d.groups as string[];
      }
      if (d.name !== undefined && d.name !== null) {
        if (typeof d.name !== 'string' || d.name === '') return { ok: false, detail: '"data.name" must be a non-empty string' };
        data.name = d.name;
      }
      const msg: BusMessage = { op: 1, data, raw: text };
      if (id !== undefined) msg.id = id;
      return { ok: true, msg };
    }
    case Op.DISCONNECT:
      return { ok: true, msg: { op: 2, data: v.data, raw: text } };
    case Op.PING:
      return { ok: true, msg: { op: 3, raw: text } };
    case Op.PONG:
      return { ok: true, msg: { op: 4, raw: text } };
    case Op.REPLY: {
      if (id === undefined) return { ok: false, detail: 'REPLY needs an "id"' };
      const msg: BusMessage = { op: 5, id, raw: text };
      if (event !== undefined) msg.event = event;
      if ('data' in v) msg.data = v.data;
      // A REPLY addressed DIRECT to its requester (the seed's style) says which request
      // it answers when one service was asked the same id by several. Never an error.
      const to = isObj(v.intent) && v.intent.target === 'DIRECT' ? v.intent.identifier : undefined;
      if (typeof to === 'string') msg.to = to;
      return { ok: true, msg };
    }
    default:
      return { ok: false, detail: `unknown op ${op}` };
  }
}

function decodeIntent(v: unknown): Intent | string {
  // The seed lets a sender leave the intent out; that means GLOBAL.
  if (v === undefined || v === null) return { target: 'GLOBAL' };
  if (!isObj(v)) return '"intent" must be an object';
  const target = v.target;
  if (typeof target !== 'string' || !(Targets as readonly string[]).includes(target)) {
    return '"intent.target" must be GLOBAL, GROUP or DIRECT';
  }
  const intent: Intent = { target: target as Target };
  if (v.identifier !== undefined && v.identifier !== null) {
    if (typeof v.identifier !== 'string') return '"intent.identifier" must be a string';
    intent.identifier = v.identifier;
  }
  if (target !== 'GLOBAL' && (intent.identifier === undefined || intent.identifier === '')) {
    return `"intent.identifier" is required for ${target}`;
  }
  if (v.self !== undefined && v.self !== null) {
    if (typeof v.self !== 'boolean') return '"intent.self" must be a boolean';
    intent.self = v.self;
  }
  return intent;
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
