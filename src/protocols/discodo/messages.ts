/**
 * The discodo dialect's wire format (contract: specs/discodo.md). Pure data and pure
 * functions, no I/O; the server and `DiscodoClient` both use it.
 *
 * Frames are JSON text `{"op": "<NAME>", "d": <any>}`. Discord ids (snowflakes, about
 * 1e18) arrive as JSON numbers or strings; a plain JSON.parse would round the numbers,
 * so frames are read with lossless-json: a number stays a `LosslessNumber` holding the
 * digits that were sent, and writing it back puts out the same digits.
 */
import { Kind, Type, TypeRegistry, type Static, type TUnsafe } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { isLosslessNumber, LosslessNumber, parse, stringify } from 'lossless-json';
import { scanJson, TOO_DEEP_DETAIL } from '../json.js';

export { isLosslessNumber, LosslessNumber };

/** Ops the server sends. */
export const ServerOp = {
  HELLO: 'HELLO',
  FORBIDDEN: 'FORBIDDEN',
  HEARTBEAT_ACK: 'HEARTBEAT_ACK',
  IDENTIFIED: 'IDENTIFIED',
  RESUMED: 'RESUMED',
  STATUS: 'STATUS',
  VC_CREATED: 'VC_CREATED',
  VC_CHANNEL_EDITED: 'VC_CHANNEL_EDITED',
  VC_DESTROYED: 'VC_DESTROYED',
} as const;
export type ServerOpName = (typeof ServerOp)[keyof typeof ServerOp];

/** Ops a client sends that Muster acts on. `getState` and `getQueue` are answered under the same op. */
export const ClientOp = {
  HEARTBEAT: 'HEARTBEAT',
  IDENTIFY: 'IDENTIFY',
  DISCORD_EVENT: 'DISCORD_EVENT',
  VC_DESTROY: 'VC_DESTROY',
  GET_STATUS: 'GET_STATUS',
  getState: 'getState',
  getQueue: 'getQueue',
} as const;
export type ClientOpName = (typeof ClientOp)[keyof typeof ClientOp];

/**
 * Discodo 3's player ops. Muster plays no audio, so each is answered with the
 * traceback NOT_SUPPORTED (any other unknown op gets UNKNOWN_OP).
 */
export const PLAYER_OPS: ReadonlySet<string> = new Set([
  'getContext',
  'setContext',
  'getSource',
  'searchSources',
  'loadSource',
  'putSource',
  'getCurrent',
  'skip',
  'seek',
  'setVolume',
  'setCrossfade',
  'setGapless',
  'setAutoplay',
  'setFilter',
  'pause',
  'resume',
  'shuffle',
  'remove',
  'moveTo',
  'requestSubtitle',
  'getOptions',
  'setOptions',
]);

/** What each client op carries and gets, for the docs (`renderClientOpTable`). */
export const CLIENT_OP_DOCS = {
  HEARTBEAT: { d: 'anything, `null` included', answer: '`HEARTBEAT_ACK` with the same `d`, byte for byte. Works from HELLO on, before IDENTIFY too' },
  IDENTIFY: { d: '`{user_id, shard_id}`; `shard_id` may be `null` or absent', answer: '`IDENTIFIED {}`; then `RESUMED` if a session with the same key was still held' },
  DISCORD_EVENT: { d: '`{t, d}`: a raw gateway event', answer: 'nothing directly; `VOICE_STATE_UPDATE` / `VOICE_SERVER_UPDATE` may produce `VC_*` events. Other `t` are ignored' },
  VC_DESTROY: { d: '`{guild_id}`', answer: '`VC_DESTROYED {guild_id}`, or traceback `VOICE_CLIENT_NOT_FOUND`' },
  GET_STATUS: { d: 'ignored', answer: '`STATUS {…}`' },
  getState: {
    d: '`{guild_id}`',
    answer: '`getState {id, guild_id, channel_id, state: 0, current: null, context: {}, options: {autoplay: true, volume: 1.0, crossfade: 10.0, filter: {}}}` or traceback `VOICE_CLIENT_NOT_FOUND`',
  },
  getQueue: { d: '`{guild_id}`', answer: '`getQueue {guild_id, entries: []}` or traceback `VOICE_CLIENT_NOT_FOUND`' },
} as const satisfies Record<ClientOpName, { d: string; answer: string }>;

/** When the server sends each op, for the docs (`renderServerOpTable`). */
export const SERVER_OP_DOCS = {
  HELLO: { d: '`{heartbeat_interval: <seconds>, version: "muster-<version>"}`', when: 'first frame on an authorized socket' },
  FORBIDDEN: { d: '`"<why>"`', when: 'wrong or missing password; close 4003 follows' },
  HEARTBEAT_ACK: { d: "the HEARTBEAT's `d`", when: 'each HEARTBEAT' },
  IDENTIFIED: { d: '`{}`', when: 'IDENTIFY accepted' },
  RESUMED: { d: '`{voice_clients: …}` (form per `compat`, see Resume)', when: 'right after IDENTIFIED when a session was held' },
  STATUS: { d: 'see below', when: 'GET_STATUS' },
  VC_CREATED: { d: '`{guild_id, id}`', when: 'both voice events of a guild arrived' },
  VC_CHANNEL_EDITED: { d: '`{guild_id, channel_id}`', when: 'the bot moved to another voice channel' },
  VC_DESTROYED: { d: '`{guild_id}`', when: 'the bot left voice (null channel), or VC_DESTROY' },
} as const satisfies Record<ServerOpName, { d: string; when: string }>;

/** The client-op table of docs/dialects/discodo.md, generated from `ClientOp`, `PLAYER_OPS` and `CLIENT_OP_DOCS`. */
export function renderClientOpTable(): string {
  const rows = (Object.values(ClientOp) as ClientOpName[]).map((op) => `| \`${op}\` | ${CLIENT_OP_DOCS[op].d} | ${CLIENT_OP_DOCS[op].answer} |`);
  const player = [...PLAYER_OPS].map((op) => `\`${op}\``).join(', ');
  return [
    '| op | `d` | answer |',
    '|---|---|---|',
    ...rows,
    `| Discodo player ops: ${player} | any | traceback \`${Traceback.NOT_SUPPORTED}\` |`,
    `| anything else | any | traceback \`${Traceback.UNKNOWN_OP}\` |`,
  ].join('\n');
}

/** The server-op table of docs/dialects/discodo.md, generated from `ServerOp` and `SERVER_OP_DOCS`. */
export function renderServerOpTable(): string {
  const rows = (Object.values(ServerOp) as ServerOpName[]).map((op) => `| \`${op}\` | ${SERVER_OP_DOCS[op].d} | ${SERVER_OP_DOCS[op].when} |`);
  return ['| op | `d` | when |', '|---|---|---|', ...rows].join('\n');
}

/** The names inside `{traceback: {NAME: "message"}}` answers. */
export const Traceback = {
  NOT_IDENTIFIED: 'NOT_IDENTIFIED',
  ALREADY_IDENTIFIED: 'ALREADY_IDENTIFIED',
  UNKNOWN_OP: 'UNKNOWN_OP',
  NOT_SUPPORTED: 'NOT_SUPPORTED',
  VOICE_CLIENT_NOT_FOUND: 'VOICE_CLIENT_NOT_FOUND',
  BAD_REQUEST: 'BAD_REQUEST',
} as const;
export type TracebackName = (typeof Traceback)[keyof typeof Traceback];

export const TracebackMessage = {
  NOT_IDENTIFIED: 'Identify first.',
  ALREADY_IDENTIFIED: 'This connection already identified.',
  VOICE_CLIENT_NOT_FOUND: 'There is no voice client in this guild.',
} as const;

/** Close codes the server sends. */
export const CloseCodes = {
  TIMEOUT: 4000,
  MALFORMED: 4002,
  FORBIDDEN: 4003,
  TAKEN_OVER: 4005,
  SLOW_CONSUMER: 4008,
} as const;

/** The discodo close codes, for the docs and the catalogue. */
export const discodoCloseCodes = {
  1000: { name: 'NORMAL', description: 'The client closed; its session stays resumable for `vcTimeout`', retryable: true },
  1001: { name: 'GOING_AWAY', description: 'The server is shutting down', retryable: true, why: 'shutdown' },
  1002: { name: 'PROTOCOL_ERROR', description: 'A WebSocket protocol error: a reserved bit or opcode, an unmasked or badly fragmented frame, a control frame over 125 bytes, an invalid close code (socket layer, no frame first)', retryable: false },
  1007: { name: 'INVALID_UTF8', description: 'A text frame that is not UTF-8 (socket layer, no frame first)', retryable: false },
  1008: { name: 'KICKED', description: 'An operator kicked the connection (`DELETE /api/v1/connections/:id`); the session stays resumable', retryable: true, why: 'kicked' },
  1009: { name: 'MESSAGE_TOO_BIG', description: 'A frame over `limits.maxPayload` (socket layer). There is no smaller pre-authentication cap: the password is checked when the socket opens, and a socket without it is closed (4003) with its frames ignored unparsed', retryable: false },
  1011: { name: 'INTERNAL_ERROR', description: 'An unexpected server error while handling a frame', retryable: true, why: 'internal error' },
  4000: { name: 'TIMEOUT', description: 'Nothing received for `handshakeTimeout`', retryable: true, why: 'ping timeout' },
  4002: { name: 'MALFORMED', description: 'Malformed JSON; JSON nested deeper than 128 levels; JSON that is not an object; `op` missing, empty or not a string; a binary frame', retryable: false, why: 'protocol error' },
  4003: { name: 'FORBIDDEN', description: 'Missing or wrong password (after `FORBIDDEN "<why>"`)', retryable: false, why: 'refused' },
  4005: { name: 'TAKEN_OVER', description: 'A newer socket identified with the same session key', retryable: false, why: 'superseded' },
  4008: { name: 'SLOW_CONSUMER', description: 'More than 4 MiB queued unsent to this socket', retryable: true, why: 'slow consumer' },
} as const;

// ---------------------------------------------------------------------------------
// Snowflakes

/**
 * A Discord id as it arrived: a JSON number kept as its digits (`LosslessNumber`), or
 * a string. Written back, it keeps its form and its digits.
 */
export type Snowflake = LosslessNumber | string;

const INTEGER = /^(0|[1-9][0-9]*)$/;
const MAX_ID_LENGTH = 64;

/** Reads an id: a non-negative integer number (any size) or a non-empty string. */
export function readSnowflake(v: unknown): Snowflake | undefined {
  if (typeof v === 'string') return v.length > 0 && v.length <= MAX_ID_LENGTH ? v : undefined;
  if (isLosslessNumber(v) && v.value.length <= MAX_ID_LENGTH && INTEGER.test(v.value)) return v;
  return undefined;
}

/** The id's text, used to compare ids whatever their form: 123 and "123" are the same id. */
export function snowflakeKey(s: Snowflake): string {
  return typeof s === 'string' ? s : s.value;
}

/** An id given by a program: a string stays a string; a bigint or a safe integer becomes a JSON number. */
export function toSnowflake(v: string | bigint | number): Snowflake {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && !Number.isSafeInteger(v)) {
    throw new RangeError(`${v} is not a safe integer; pass Discord ids as strings or bigints`);
  }
  if (v < 0) throw new RangeError('ids are non-negative');
  return new LosslessNumber(v.toString());
}

/** The resume key: `user_id`, or `user_id-shard_id` when shard_id is not null. */
export function sessionKey(userId: Snowflake, shardId: Snowflake | null): string {
  return shardId === null ? snowflakeKey(userId) : `${snowflakeKey(userId)}-${snowflakeKey(shardId)}`;
}

// ---------------------------------------------------------------------------------
// Decoding

// ---------------------------------------------------------------------------------
// Schemas. Frames are parsed losslessly, so a JSON number is a LosslessNumber: ids are
// checked by two custom kinds (registered once, compiled like any other schema).

TypeRegistry.Set('DiscodoSnowflake', (_schema, v) => readSnowflake(v) !== undefined);
TypeRegistry.Set('DiscodoIntegerId', (_schema, v) => {
  const id = readSnowflake(v);
  return id !== undefined && (typeof id !== 'string' || INTEGER.test(id));
});
const custom = <T>(kind: string, description: string): TUnsafe<T> =>
  Type.Unsafe<T>({ [Kind]: kind, anyOf: [{ type: 'string' }, { type: 'integer', minimum: 0 }], description });
/** A Discord id: a non-negative integer (any size, digits kept) or a non-empty string, at most 64 characters. */
export const SnowflakeSchema = custom<Snowflake>('DiscodoSnowflake', 'a Discord id: a non-negative integer of any size, or a string');
/** An id that must be digits, as a number or a string (session keys are built from it). */
export const IntegerIdSchema = custom<Snowflake>('DiscodoIntegerId', 'a non-negative integer id, as a number (any size) or a string of digits');

/** A frame: `{op, d}`; `d` may be absent (then null). Other members are ignored. */
export const EnvelopeSchema = Type.Object({ op: Type.String({ minLength: 1 }), d: Type.Optional(Type.Unknown()) });

/** The `d` of each client op Muster reads. */
export const Payloads = {
  IDENTIFY: Type.Object({ user_id: IntegerIdSchema, shard_id: Type.Optional(Type.Union([IntegerIdSchema, Type.Null()])) }),
  DISCORD_EVENT: Type.Object({ t: Type.String({ description: 'the gateway event name' }), d: Type.Optional(Type.Unknown()) }),
  /** VC_DESTROY, getState, getQueue. */
  GUILD: Type.Object({ guild_id: SnowflakeSchema }),
} as const;
export type IdentifyPayload = Static<typeof Payloads.IDENTIFY>;
export type DiscordEventPayload = Static<typeof Payloads.DISCORD_EVENT>;

const Check = {
  envelope: TypeCompiler.Compile(EnvelopeSchema),
  IDENTIFY: TypeCompiler.Compile(Payloads.IDENTIFY),
  DISCORD_EVENT: TypeCompiler.Compile(Payloads.DISCORD_EVENT),
  GUILD: TypeCompiler.Compile(Payloads.GUILD),
};

export interface Envelope {
  readonly op: string;
  /** `d` as parsed, numbers as LosslessNumber. null when absent. */
  readonly d: unknown;
  /** `d`'s exact text in the frame (`null` when absent), for echoing it byte for byte. */
  readonly rawD: string;
}

export type DecodeResult = { readonly ok: true; readonly env: Envelope } | { readonly ok: false; readonly detail: string };

export const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !isLosslessNumber(v);

/** Parses JSON keeping every number's digits. Throws SyntaxError on malformed JSON. */
export function parseLossless(text: string): unknown {
  return parse(text);
}

/**
 * Parses and checks one frame's envelope against `EnvelopeSchema`. The op's `d` is
 * checked by the op's decoder below (`decodeIdentify`, …) against `Payloads`: a bad
 * `d` is a BAD_REQUEST traceback, not a close, so it is answered per op.
 */
export function decode(text: string): DecodeResult {
  if (scanJson(text).tooDeep) return { ok: false, detail: TOO_DEEP_DETAIL };
  let v: unknown;
  try {
    v = parse(text);
  } catch (err) {
    return { ok: false, detail: `malformed JSON: ${(err as Error).message}` };
  }
  if (!isObj(v)) return { ok: false, detail: 'a frame must be a JSON object {"op", "d"}' };
  if (!Check.envelope.Check(v)) return { ok: false, detail: '"op" must be a non-empty string' };
  const has = Object.prototype.hasOwnProperty.call(v, 'd');
  return { ok: true, env: { op: v.op, d: has ? v.d : null, rawD: has ? (rawMember(text, 'd') ?? 'null') : 'null' } };
}

export type Decoded<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly detail: string };

export interface IdentifyData {
  readonly userId: IdentifyPayload['user_id'];
  readonly shardId: NonNullable<IdentifyPayload['shard_id']> | null;
}

/** `IDENTIFY {user_id, shard_id}`; shard_id may be null or absent. */
export function decodeIdentify(d: unknown): Decoded<IdentifyData> {
  if (Check.IDENTIFY.Check(d)) return { ok: true, value: { userId: d.user_id, shardId: d.shard_id ?? null } };
  if (!isObj(d)) return { ok: false, detail: 'IDENTIFY "d" must be an object {user_id, shard_id}' };
  // Digits only, as for shard_id: "1234-0" would otherwise share a session key with user 1234, shard 0.
  if (!Check.IDENTIFY.Check({ user_id: d.user_id })) return { ok: false, detail: '"d.user_id" must be an integer id (number or string)' };
  return { ok: false, detail: '"d.shard_id" must be a non-negative integer or null' };
}

export interface DiscordEvent {
  readonly t: DiscordEventPayload['t'];
  readonly d: unknown;
}

/** `DISCORD_EVENT {t, d}`: a raw gateway event the bot forwards. */
export function decodeDiscordEvent(d: unknown): Decoded<DiscordEvent> {
  if (Check.DISCORD_EVENT.Check(d)) return { ok: true, value: { t: d.t, d: d.d } };
  if (!isObj(d)) return { ok: false, detail: 'DISCORD_EVENT "d" must be an object {t, d}' };
  return { ok: false, detail: '"d.t" must be the gateway event name' };
}

/** The `guild_id` of an op's `d`, when `d` is an object carrying a valid one. */
export function guildIdOf(d: unknown): Snowflake | undefined {
  return Check.GUILD.Check(d) ? d.guild_id : undefined;
}

/**
 * The exact text of the top-level member `key` of a JSON object's text (the last one,
 * as JSON.parse would take), or undefined. `text` must already be valid JSON.
 */
export function rawMember(text: string, key: string): string | undefined {
  let i = skipWs(text, 0);
  if (text[i] !== '{') return undefined;
  i = skipWs(text, i + 1);
  if (text[i] === '}') return undefined;
  let found: string | undefined;
  while (i < text.length) {
    const ks = i;
    i = skipString(text, i);
    const k = JSON.parse(text.slice(ks, i)) as string;
    i = skipWs(text, i) + 1; // ':'
    i = skipWs(text, i);
    const vs = i;
    i = skipValue(text, i);
    if (k === key) found = text.slice(vs, i);
    i = skipWs(text, i);
    if (text[i] !== ',') break;
    i = skipWs(text, i + 1);
  }
  return found;
}

function skipWs(t: string, i: number): number {
  while (i < t.length) {
    const c = t.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
    i++;
  }
  return i;
}

/** `i` is at the opening quote; returns the index after the closing one. */
function skipString(t: string, i: number): number {
  let j = i + 1;
  while (j < t.length) {
    const c = t[j];
    if (c === '\\') j += 2;
    else if (c === '"') return j + 1;
    else j++;
  }
  return j;
}

function skipValue(t: string, i: number): number {
  const c = t[i];
  if (c === '"') return skipString(t, i);
  if (c === '{' || c === '[') {
    let depth = 0;
    let j = i;
    while (j < t.length) {
      const ch = t[j];
      if (ch === '"') {
        j = skipString(t, j);
        continue;
      }
      if (ch === '{' || ch === '[') depth++;
      else if (ch === '}' || ch === ']') {
        depth--;
        if (depth === 0) return j + 1;
      }
      j++;
    }
    return j;
  }
  let j = i;
  while (j < t.length && !',}] \t\n\r'.includes(t[j] as string)) j++;
  return j;
}

// ---------------------------------------------------------------------------------
// Encoding

/** One frame. Snowflakes (LosslessNumber or string) are written in their own form. */
export function encodeFrame(op: string, d: unknown): string {
  return `{"op":${JSON.stringify(op)},"d":${stringify(d ?? null) ?? 'null'}}`;
}

/** A frame whose `d` is already JSON text (echoed without re-serializing). */
export function encodeRaw(op: string, rawD: string): string {
  return `{"op":${JSON.stringify(op)},"d":${rawD}}`;
}

/** Milliseconds (the config's unit) to the seconds HELLO carries: 15000 → 15. */
export function intervalSeconds(ms: number): number {
  return ms / 1000;
}

/** A voice client as RESUMED lists it. */
export interface ResumedVoiceClient {
  readonly guildId: Snowflake;
  readonly id: string;
  readonly channelId: Snowflake | null;
}

/** `seed`: `[[guild_id, channel_id], …]`; `discodo-3`: `{"<guild_id>": {id, channel}}`. */
export type ResumedForm = 'seed' | 'discodo-3';

/** The idle player's options, written with the decimals Discodo 3 sends (1.0, 10.0). */
const IDLE_OPTIONS = '{"autoplay":true,"volume":1.0,"crossfade":10.0,"filter":{}}';

export const encode = {
  hello: (heartbeatIntervalMs: number, version: string): string =>
    encodeFrame(ServerOp.HELLO, { heartbeat_interval: intervalSeconds(heartbeatIntervalMs), version }),
  forbidden: (why: string): string => encodeFrame(ServerOp.FORBIDDEN, why),
  heartbeatAck: (rawD: string): string => encodeRaw(ServerOp.HEARTBEAT_ACK, rawD),
  identified: (): string => encodeFrame(ServerOp.IDENTIFIED, {}),
  resumed: (vcs: readonly ResumedVoiceClient[], form: ResumedForm): string => {
    if (form === 'seed') {
      return encodeFrame(ServerOp.RESUMED, { voice_clients: vcs.map((v) => [v.guildId, v.channelId]) });
    }
    // Written by hand so the guilds keep their order (an object would put "333" before "1111…").
    const entries = vcs.map((v) => `${JSON.stringify(snowflakeKey(v.guildId))}:${stringify({ id: v.id, channel: v.channelId }) ?? 'null'}`);
    return encodeRaw(ServerOp.RESUMED, `{"voice_clients":{${entries.join(',')}}}`);
  },
  status: (d: Record<string, unknown>): string => encodeFrame(ServerOp.STATUS, d),
  vcCreated: (guildId: Snowflake, id: string): string => encodeFrame(ServerOp.VC_CREATED, { guild_id: guildId, id }),
  vcChannelEdited: (guildId: Snowflake, channelId: Snowflake): string =>
    encodeFrame(ServerOp.VC_CHANNEL_EDITED, { guild_id: guildId, channel_id: channelId }),
  vcDestroyed: (guildId: Snowflake): string => encodeFrame(ServerOp.VC_DESTROYED, { guild_id: guildId }),
  /** `<op> {traceback: {NAME: message}}`, plus `guild_id` when the request named a guild. */
  traceback: (op: string, name: TracebackName, message: string, guildId?: Snowflake): string =>
    encodeFrame(op, guildId === undefined ? { traceback: { [name]: message } } : { traceback: { [name]: message }, guild_id: guildId }),
  /** Discodo 3's `getState` answer for a player that plays nothing. */
  idleState: (id: string, guildId: Snowflake, channelId: Snowflake | null): string =>
    `{"op":"getState","d":{"id":${JSON.stringify(id)},"guild_id":${stringify(guildId)},"channel_id":${stringify(channelId)},` +
    `"state":0,"current":null,"context":{},"options":${IDLE_OPTIONS}}}`,
  emptyQueue: (guildId: Snowflake): string => encodeFrame(ClientOp.getQueue, { guild_id: guildId, entries: [] }),
  // Client side
  identify: (userId: Snowflake, shardId: Snowflake | null): string =>
    encodeFrame(ClientOp.IDENTIFY, { user_id: userId, shard_id: shardId }),
  heartbeat: (d: unknown): string => encodeFrame(ClientOp.HEARTBEAT, d),
};
