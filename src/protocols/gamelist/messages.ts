/**
 * The gamelist dialect's socket wire format (contract: specs/gamelist.md). Pure data
 * and pure functions: no I/O. The masterserver (MS) and the game server client (GS)
 * both use it.
 *
 * Numbers are parsed losslessly: every JSON number keeps its source text, so an
 * INT64 `metadata.id` such as 9223372036854775807 is never rounded through a
 * JavaScript number. Ids are carried as that text and written back verbatim.
 */
import { Kind, Type, TypeRegistry, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { parse } from 'lossless-json';
import { parseJson, scanJson, TOO_DEEP_DETAIL } from '../json.js';
import {
  integerText,
  isInt64Text,
  JsonNumber,
  smallInt,
  INT32_MAX,
  INT32_MIN,
  INT64_MAX,
  INT64_MIN,
  UINT16_MAX,
  UINT32_MAX,
  type Int64Text,
} from './integers.js';

export * from './integers.js';

export const MessageType = {
  /** GS → MS: register or refresh the server's entry. */
  REGISTER: 1,
  /** MS → GS: the answer to REGISTER. */
  REGISTER_RESPONSE: -1,
  /** MS → GS: a player wants to join. */
  JOIN: 2,
  /** GS → MS: the answer to JOIN. */
  JOIN_RESPONSE: -2,
} as const;
export type MessageTypeCode = (typeof MessageType)[keyof typeof MessageType];
const KNOWN_TYPES: ReadonlySet<number> = new Set(Object.values(MessageType));

/** Each message type for the docs' table (`renderMessageTable`): direction, body, the answer's type. */
export const MESSAGE_DOCS = {
  REGISTER: { direction: 'GS → MS', body: '`info: {name, desc, port, map, playlist, curPlayers, maxPlayers, password?, gameState}`, `regToken`', answer: '−1' },
  REGISTER_RESPONSE: { direction: 'MS → GS', body: '`success`, `error?: {type, msg}`; the first success on a socket adds `server_id`', answer: '—' },
  JOIN: { direction: 'MS → GS', body: '`sessionToken, username, clantag, conv`', answer: '−2' },
  JOIN_RESPONSE: { direction: 'GS → MS', body: '`success`, `error?: {type, msg}`', answer: '—' },
} as const satisfies Record<keyof typeof MessageType, { direction: string; body: string; answer: string }>;

/** The message table of docs/dialects/gamelist.md, generated from `MessageType` and `MESSAGE_DOCS`. */
export function renderMessageTable(): string {
  const rows = (Object.keys(MessageType) as Array<keyof typeof MessageType>).map((name) => {
    const d = MESSAGE_DOCS[name];
    return `| ${String(MessageType[name]).replace('-', '−')} | ${d.direction} | ${d.body} | ${d.answer} |`;
  });
  return ['| type | direction | body | answer |', '|---|---|---|---|', ...rows].join('\n');
}

/** Error types of a registration response. */
export const RegistrationError = {
  INVALID_TOKEN: 1,
  SERVER_LIMIT: 2,
} as const;
export type RegistrationErrorType = (typeof RegistrationError)[keyof typeof RegistrationError];

export const registrationErrorMessage = {
  1: 'Invalid registration token',
  2: 'Server limit reached',
} as const satisfies Record<RegistrationErrorType, string>;

/** The close codes of the socket, for the docs and the catalogue. */
export const gamelistCloseCodes = {
  1000: { name: 'NORMAL', description: 'The peer said goodbye', retryable: true },
  1001: { name: 'GOING_AWAY', description: 'No pong within `pongTimeout` of a ping (the entry is removed at once); no listing within `registrationTtl` of connecting (reason `no registration within N ms`); server shutdown', retryable: true, why: 'ping timeout' },
  1002: { name: 'PROTOCOL_ERROR', description: 'A WebSocket protocol error: a reserved bit or opcode, an unmasked or badly fragmented frame, a control frame over 125 bytes, an invalid close code (socket layer, no frame first)', retryable: false },
  1003: { name: 'UNSUPPORTED_DATA', description: 'A binary frame', retryable: false, why: 'protocol error' },
  1007: { name: 'INVALID_PAYLOAD', description: 'A text frame that is not UTF-8 (socket layer, no frame first); malformed JSON', retryable: false, why: 'protocol error' },
  1008: { name: 'POLICY_VIOLATION', description: 'JSON nested deeper than 128 levels (reason `JSON nested deeper than 128 levels`); `metadata` missing or invalid (`type` not 1, −1, 2 or −2; `id` not an INT64 integer; extra keys in `metadata`); the wrong schema for the type (missing, extra, mistyped or out-of-range fields); a GS sending type 2; `maxFailedRegistrations` invalid tokens; a slow consumer; an operator\'s kick (reason `kicked by an operator`)', retryable: false, why: 'protocol error', retry: 'no (yes after a kick)' },
  1009: { name: 'MESSAGE_TOO_BIG', description: 'Before a registration with a valid `regToken`: a frame over `preAuthMaxBytes`, closed before it is parsed (reason `a frame before a valid registration may be at most N bytes`), or over 4 × `preAuthMaxBytes`, refused by the socket layer at its header before it is buffered; afterwards, a frame over `limits.maxPayload` (socket layer)', retryable: false, why: 'protocol error' },
  1011: { name: 'INTERNAL_ERROR', description: 'An unexpected server error', retryable: true, why: 'internal error' },
} as const;

export const GamelistClose = {
  GOING_AWAY: 1001,
  UNSUPPORTED_DATA: 1003,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
} as const;

// ---------------------------------------------------------------------------------
// Messages

// Each integer type is a custom kind: a value is a JS number (a short integer literal)
// or a JsonNumber holding its source text, and it must be an integer literal in range.
function intKind<T = number>(kind: string, min: bigint, max: bigint, description: string): () => TUnsafe<T> {
  TypeRegistry.Set(kind, (_schema, v) => integerText(v, min, max) !== undefined);
  return () => Type.Unsafe<T>({ [Kind]: kind, type: 'integer', minimum: Number(min), maximum: Number(max), description });
}
const UINT16 = intKind('GamelistUINT16', 0n, BigInt(UINT16_MAX), 'UINT16');
const INT32 = intKind('GamelistINT32', BigInt(INT32_MIN), BigInt(INT32_MAX), 'INT32');
const UINT32 = intKind('GamelistUINT32', 0n, BigInt(UINT32_MAX), 'UINT32');
const INT64 = intKind<Int64Text>('GamelistINT64', INT64_MIN, INT64_MAX, 'INT64, kept as the digits the peer wrote');
const Strict = <T extends Parameters<typeof Type.Object>[0]>(props: T) => Type.Object(props, { additionalProperties: false });

/** `info` of a registration. */
export const ServerInfoSchema = Strict({
  name: Type.String(),
  desc: Type.String(),
  port: UINT16(),
  map: Type.String(),
  playlist: Type.String(),
  curPlayers: INT32(),
  maxPlayers: INT32(),
  password: Type.Optional(Type.String()),
  gameState: INT32(),
});
export type ServerInfo = Static<typeof ServerInfoSchema>;

export const ResponseErrorSchema = Strict({ type: INT32(), msg: Type.String() });
export type ResponseError = Static<typeof ResponseErrorSchema>;

const Metadata = <T extends number>(type: T) => Strict({ type: Type.Literal(type), id: INT64() });

/** The wire schema of each message, by direction and type. An optional field may be absent, never null. */
export const Wire = {
  register: Strict({ metadata: Metadata(MessageType.REGISTER), info: ServerInfoSchema, regToken: Type.String() }),
  registerResponseToGs: Strict({
    metadata: Metadata(MessageType.REGISTER_RESPONSE),
    success: Type.Boolean(),
    error: Type.Optional(ResponseErrorSchema),
    server_id: Type.Optional(Type.String()),
  }),
  responseFromGs: <T extends -1 | -2>(type: T) => Strict({ metadata: Metadata(type), success: Type.Boolean(), error: Type.Optional(ResponseErrorSchema) }),
  join: Strict({ metadata: Metadata(MessageType.JOIN), sessionToken: Type.String(), username: Type.String(), clantag: Type.String(), conv: UINT32() }),
};

export interface RegisterMessage {
  type: 1;
  id: Int64Text;
  info: ServerInfo;
  regToken: string;
}

export interface ResponseMessage {
  type: -1 | -2;
  id: Int64Text;
  success: boolean;
  error?: ResponseError;
  /** The `server_id` extra field of the first successful registration response (MS → GS only). */
  serverId?: string;
}

export type JoinMessage = { type: 2; id: Int64Text } & Omit<Static<typeof Wire.join>, 'metadata'>;

/** What a GS may send the MS. */
export type FromGameServer = RegisterMessage | ResponseMessage;
/** What the MS may send a GS. */
export type FromMaster = ResponseMessage | JoinMessage;

export type DecodeResult<M> =
  | { ok: true; msg: M }
  /** `code` is the close code the receiver must close with: 1007 or 1008. */
  | { ok: false; code: 1007 | 1008; detail: string };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof JsonNumber);

/**
 * Parses a frame with JSON.parse (see parseJson): a number that a JS number holds
 * exactly (a short integer literal) comes out as a JS number, any other as a
 * JsonNumber holding its source text. The lossless parser is the fallback only.
 */
function parseText(text: string): { ok: true; value: unknown } | { ok: false; code: 1007 | 1008; detail: string } {
  const scan = scanJson(text);
  try {
    if (scan.tooDeep) {
      // Valid JSON nested this deep is still JSON, just no message of this protocol: 1008.
      JSON.parse(text);
      return { ok: false, code: 1008, detail: TOO_DEEP_DETAIL };
    }
    return { ok: true, value: parseJson(text, scan, (t) => parse(t, null, (s) => new JsonNumber(s)), (s) => new JsonNumber(s)) };
  } catch (err) {
    return { ok: false, code: 1007, detail: `malformed JSON: ${(err as Error).message}` };
  }
}

/** Every key of `o` is allowed and every required key is there; else a description of the problem. */
function checkKeys(o: Obj, where: string, required: readonly string[], optional: readonly string[] = []): string | undefined {
  for (const k of required) if (!Object.hasOwn(o, k)) return `${where}: missing "${k}"`;
  for (const k of Object.keys(o)) {
    if (!required.includes(k) && !optional.includes(k)) return `${where}: unexpected field "${k}"`;
  }
  return undefined;
}

interface Metadata {
  type: MessageTypeCode;
  id: Int64Text;
}

function decodeMetadata(v: Obj): Metadata | string {
  const m = v.metadata;
  if (!isObj(m)) return '"metadata" must be an object';
  const keys = checkKeys(m, 'metadata', ['type', 'id']);
  if (keys) return keys;
  const type = smallInt(m.type, -2, 2);
  if (type === undefined || !KNOWN_TYPES.has(type)) return '"metadata.type" must be 1, -1, 2 or -2';
  const id = integerText(m.id, INT64_MIN, INT64_MAX);
  if (id === undefined) return '"metadata.id" must be an INT64 integer';
  return { type: type as MessageTypeCode, id };
}

/**
 * An optional field may be absent. `null` is not absent: it is not a STRING (or an
 * object), so it is a mistyped field and the wrong schema (1008), as the strict close
 * rules say.
 */
const absent = (v: unknown): boolean => v === undefined;

export function decodeInfo(v: unknown): ServerInfo | string {
  if (!isObj(v)) return '"info" must be an object';
  const keys = checkKeys(v, 'info', ['name', 'desc', 'port', 'map', 'playlist', 'curPlayers', 'maxPlayers', 'gameState'], ['password']);
  if (keys) return keys;
  for (const k of ['name', 'desc', 'map', 'playlist'] as const) {
    if (typeof v[k] !== 'string') return `"info.${k}" must be a string`;
  }
  const port = smallInt(v.port, 0, UINT16_MAX);
  if (port === undefined) return '"info.port" must be a UINT16 integer (0-65535)';
  const ints: Partial<Record<'curPlayers' | 'maxPlayers' | 'gameState', number>> = {};
  for (const k of ['curPlayers', 'maxPlayers', 'gameState'] as const) {
    const n = smallInt(v[k], INT32_MIN, INT32_MAX);
    if (n === undefined) return `"info.${k}" must be an INT32 integer`;
    ints[k] = n;
  }
  const info: ServerInfo = {
    name: v.name as string,
    desc: v.desc as string,
    port,
    map: v.map as string,
    playlist: v.playlist as string,
    curPlayers: ints.curPlayers as number,
    maxPlayers: ints.maxPlayers as number,
    gameState: ints.gameState as number,
  };
  if (!absent(v.password)) {
    if (typeof v.password !== 'string') return '"info.password" must be a string';
    info.password = v.password;
  }
  return info;
}

function decodeResponse(v: Obj, meta: Metadata, extraFields: readonly string[]): ResponseMessage | string {
  const keys = checkKeys(v, 'response', ['metadata', 'success'], ['error', ...extraFields]);
  if (keys) return keys;
  if (typeof v.success !== 'boolean') return '"success" must be a boolean';
  const msg: ResponseMessage = { type: meta.type as -1 | -2, id: meta.id, success: v.success };
  if (!absent(v.error)) {
    const e = v.error;
    if (!isObj(e)) return '"error" must be an object';
    const ek = checkKeys(e, 'error', ['type', 'msg']);
    if (ek) return ek;
    const type = smallInt(e.type, INT32_MIN, INT32_MAX);
    if (type === undefined) return '"error.type" must be an INT32 integer';
    if (typeof e.msg !== 'string') return '"error.msg" must be a string';
    msg.error = { type, msg: e.msg };
  }
  return msg;
}

function bad<M>(code: 1007 | 1008, detail: string): DecodeResult<M> {
  return { ok: false, code, detail };
}

function decodeEnvelope(text: string): { ok: true; v: Obj; meta: Metadata } | { ok: false; code: 1007 | 1008; detail: string } {
  const p = parseText(text);
  if (!p.ok) return { ok: false, code: p.code, detail: p.detail };
  if (!isObj(p.value)) return { ok: false, code: 1008, detail: 'a message must be a JSON object with "metadata"' };
  const meta = decodeMetadata(p.value);
  if (typeof meta === 'string') return { ok: false, code: 1008, detail: meta };
  return { ok: true, v: p.value, meta };
}

type Builder = (v: Obj, id: Int64Text) => FromGameServer | FromMaster;
const num = (v: unknown): number => (typeof v === 'number' ? v : Number((v as JsonNumber).text));
const text64 = (v: unknown): Int64Text => (typeof v === 'number' ? String(v) : (v as JsonNumber).text);
const info = (i: Obj): ServerInfo => {
  const out: ServerInfo = {
    name: i.name as string,
    desc: i.desc as string,
    port: num(i.port),
    map: i.map as string,
    playlist: i.playlist as string,
    curPlayers: num(i.curPlayers),
    maxPlayers: num(i.maxPlayers),
    gameState: num(i.gameState),
  };
  if (i.password !== undefined) out.password = i.password as string;
  return out;
};
const response = (type: -1 | -2) => (v: Obj, id: Int64Text): ResponseMessage => {
  const msg: ResponseMessage = { type, id, success: v.success as boolean };
  const e = v.error as Obj | undefined;
  if (e !== undefined) msg.error = { type: num(e.type), msg: e.msg as string };
  if (typeof v.server_id === 'string') msg.serverId = v.server_id;
  return msg;
};
const compiled = (schema: TSchema, build: Builder): [TypeCheck<TSchema>, Builder] => [TypeCompiler.Compile(schema), build];

/** What a GS may send, by metadata.type: the compiled wire schema and the message it decodes to. */
const FROM_GS: ReadonlyMap<number, [TypeCheck<TSchema>, Builder]> = new Map([
  [MessageType.REGISTER, compiled(Wire.register, (v, id) => ({ type: 1, id, info: info(v.info as Obj), regToken: v.regToken as string }))],
  [MessageType.REGISTER_RESPONSE, compiled(Wire.responseFromGs(-1), response(-1))],
  [MessageType.JOIN_RESPONSE, compiled(Wire.responseFromGs(-2), response(-2))],
]);
/** What the MS may send (the GS client's side). */
const FROM_MS: ReadonlyMap<number, [TypeCheck<TSchema>, Builder]> = new Map([
  [
    MessageType.JOIN,
    compiled(Wire.join, (v, id) => ({ type: 2, id, sessionToken: v.sessionToken as string, username: v.username as string, clantag: v.clantag as string, conv: num(v.conv) })),
  ],
  [MessageType.REGISTER_RESPONSE, compiled(Wire.registerResponseToGs, response(-1))],
  [MessageType.JOIN_RESPONSE, compiled(Wire.responseFromGs(-2), response(-2))],
]);

/**
 * The schemas decide: a frame that passes its type's compiled wire schema is built
 * into its message here. One that does not goes through the field-by-field checks
 * below, which name the first problem (the close reason) in the contract's words.
 */
function checked(text: string, table: ReadonlyMap<number, [TypeCheck<TSchema>, Builder]>): FromGameServer | FromMaster | undefined {
  const p = parseText(text);
  if (!p.ok || !isObj(p.value) || !isObj(p.value.metadata)) return undefined;
  const entry = typeof p.value.metadata.type === 'number' ? table.get(p.value.metadata.type) : undefined;
  if (entry === undefined || !entry[0].Check(p.value)) return undefined;
  return entry[1](p.value, text64(p.value.metadata.id));
}

/**
 * Decodes a text frame a GS sent. Malformed JSON is 1007; missing or invalid
 * metadata, or the wrong schema for the type, is 1008. Type 2 (a join request)
 * only ever goes from the MS to a GS, so a GS sending it is the wrong schema.
 */
export function decodeFromGameServer(text: string): DecodeResult<FromGameServer> {
  const fast = checked(text, FROM_GS);
  if (fast) return { ok: true, msg: fast as FromGameServer };
  const env = decodeEnvelope(text);
  if (!env.ok) return env;
  const { v, meta } = env;
  switch (meta.type) {
    case MessageType.REGISTER: {
      const keys = checkKeys(v, 'registration', ['metadata', 'info', 'regToken']);
      if (keys) return bad(1008, keys);
      const info = decodeInfo(v.info);
      if (typeof info === 'string') return bad(1008, info);
      if (typeof v.regToken !== 'string') return bad(1008, '"regToken" must be a string');
      return { ok: true, msg: { type: 1, id: meta.id, info, regToken: v.regToken } };
    }
    case MessageType.REGISTER_RESPONSE:
    case MessageType.JOIN_RESPONSE: {
      const r = decodeResponse(v, meta, []);
      return typeof r === 'string' ? bad(1008, r) : { ok: true, msg: r };
    }
    case MessageType.JOIN:
      return bad(1008, 'type 2 (player join) is sent by the masterserver only');
  }
}

/** Decodes a text frame the MS sent (for the GS client). Same rules, other direction. */
export function decodeFromMaster(text: string): DecodeResult<FromMaster> {
  const fast = checked(text, FROM_MS);
  if (fast) return { ok: true, msg: fast as FromMaster };
  const env = decodeEnvelope(text);
  if (!env.ok) return env;
  const { v, meta } = env;
  switch (meta.type) {
    case MessageType.JOIN: {
      const keys = checkKeys(v, 'join request', ['metadata', 'sessionToken', 'username', 'clantag', 'conv']);
      if (keys) return bad(1008, keys);
      for (const k of ['sessionToken', 'username', 'clantag'] as const) {
        if (typeof v[k] !== 'string') return bad(1008, `"${k}" must be a string`);
      }
      const conv = smallInt(v.conv, 0, UINT32_MAX);
      if (conv === undefined) return bad(1008, '"conv" must be a UINT32 integer');
      return {
        ok: true,
        msg: {
          type: 2,
          id: meta.id,
          sessionToken: v.sessionToken as string,
          username: v.username as string,
          clantag: v.clantag as string,
          conv,
        },
      };
    }
    case MessageType.REGISTER_RESPONSE: {
      const r = decodeResponse(v, meta, ['server_id']);
      if (typeof r === 'string') return bad(1008, r);
      if (!absent(v.server_id)) {
        if (typeof v.server_id !== 'string') return bad(1008, '"server_id" must be a string');
        r.serverId = v.server_id;
      }
      return { ok: true, msg: r };
    }
    case MessageType.JOIN_RESPONSE: {
      const r = decodeResponse(v, meta, []);
      return typeof r === 'string' ? bad(1008, r) : { ok: true, msg: r };
    }
    case MessageType.REGISTER:
      return bad(1008, 'type 1 (registration) is sent by game servers only');
  }
}

// ---------------------------------------------------------------------------------
// Encoding. Ids are spliced in as text, never through a JS number.

function idText(id: Int64Text): string {
  if (!isInt64Text(id)) throw new RangeError(`not an INT64 id: ${id}`);
  return id;
}

function metadata(type: MessageTypeCode, id: Int64Text): string {
  return `{"metadata":{"type":${type},"id":${idText(id)}}`;
}

/** A general response. `extra` fields (e.g. `server_id`) go after the standard ones. */
export function encodeResponse(
  type: -1 | -2,
  id: Int64Text,
  success: boolean,
  error?: ResponseError,
  extra: Readonly<Record<string, string>> = {},
): string {
  let out = `${metadata(type, id)},"success":${success}`;
  if (error !== undefined) out += `,"error":${JSON.stringify({ type: error.type, msg: error.msg })}`;
  for (const [k, val] of Object.entries(extra)) out += `,${JSON.stringify(k)}:${JSON.stringify(val)}`;
  return `${out}}`;
}

export function encodeRegistrationError(id: Int64Text, type: RegistrationErrorType): string {
  return encodeResponse(-1, id, false, { type, msg: registrationErrorMessage[type] });
}

export function encodeRegister(id: Int64Text, info: ServerInfo, regToken: string): string {
  const i: Record<string, unknown> = {
    name: info.name,
    desc: info.desc,
    port: info.port,
    map: info.map,
    playlist: info.playlist,
    curPlayers: info.curPlayers,
    maxPlayers: info.maxPlayers,
  };
  if (info.password !== undefined) i.password = info.password;
  i.gameState = info.gameState;
  return `${metadata(1, id)},"info":${JSON.stringify(i)},"regToken":${JSON.stringify(regToken)}}`;
}

export function encodeJoin(id: Int64Text, join: Omit<JoinMessage, 'type' | 'id'>): string {
  return (
    `${metadata(2, id)},"sessionToken":${JSON.stringify(join.sessionToken)},"username":${JSON.stringify(join.username)}` +
    `,"clantag":${JSON.stringify(join.clantag)},"conv":${join.conv}}`
  );
}
