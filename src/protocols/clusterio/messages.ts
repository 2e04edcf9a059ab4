/**
 * The clusterio dialect's wire format (contract: specs/clusterio.md; seed:
 * seeds/001-clusterio-link.md). Pure data: every message type has a TypeBox schema
 * (JSON Schema, `additionalProperties: false` for every message's data), compiled
 * once. The schemas are also the documentation: docs/dialects/clusterio.md lists them.
 * The server and `ClusterioLink` both use this module.
 */
import { Type, type Static, type TSchema, type TProperties, type TObject } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';

/** The protocol version sent in `hello` (the 2020 clients log it and accept any string). */
export const PROTOCOL_VERSION = '2.0.0-alpha';

/** The feature a client names in `register_*` to opt in to sessions. */
export const SESSION_FEATURE = 'session';

export type Role = 'slave' | 'control';

const Int = Type.Integer();
const Str = Type.String();
function Strict<P extends TProperties>(props: P): TObject<P> {
  return Type.Object(props, { additionalProperties: false });
}
/** An object whose contents Muster relays or keeps unchanged. */
const OpenObject = Type.Object({}, { additionalProperties: true });

/** Clusterio's serialized config. Groups and fields Muster does not know are kept unchanged. */
export const SerializedConfig = Type.Object(
  {
    groups: Type.Array(
      Type.Object({ name: Str, fields: OpenObject }, { additionalProperties: true }),
    ),
  },
  { additionalProperties: true },
);
export type SerializedConfig = Static<typeof SerializedConfig>;

export const SlaveListItem = Strict({ agent: Str, version: Str, name: Str, id: Int, connected: Type.Boolean() });
export const InstanceListItem = Strict({ name: Str, id: Int, assigned_slave: Type.Union([Int, Type.Null()]) });
export type SlaveListItem = Static<typeof SlaveListItem>;
export type InstanceListItem = Static<typeof InstanceListItem>;

const Features = Type.Optional(Type.Array(Str));

// ---------------------------------------------------------------------------------
// Handshake and session-control frames

export const Handshake = {
  hello: Strict({ version: Str }),
  register_slave: Strict({ token: Str, agent: Str, version: Str, name: Str, id: Int, features: Features }),
  register_control: Strict({ token: Str, agent: Str, version: Str, features: Features }),
  /** `{}` for seed clients; `{session_token, heartbeat_interval}` (seconds) for session clients. */
  ready: Type.Union([
    Strict({}),
    Strict({ session_token: Str, heartbeat_interval: Type.Number({ exclusiveMinimum: 0 }) }),
  ]),
  close: Strict({ reason: Str }),
  resume: Strict({ session_token: Str, last_seq: Type.Integer({ minimum: 0 }) }),
  continue: Strict({ last_seq: Type.Integer({ minimum: 0 }) }),
  invalidate: Strict({}),
  heartbeat: Strict({ last_seq: Type.Integer({ minimum: 0 }) }),
} as const;
export type HandshakeType = keyof typeof Handshake;

/** Session-control frames: seq 0 in a session, outside the session numbering. */
export const SESSION_CONTROL_TYPES: ReadonlySet<string> = new Set(['ready', 'resume', 'continue', 'invalidate', 'heartbeat', 'close']);

// ---------------------------------------------------------------------------------
// Requests: `<name>_request` answered by `<name>_response` with `data.seq`

interface RequestSpec {
  readonly request: TObject;
  /** Properties of a successful response besides `seq`. */
  readonly response: TProperties;
  /** Who may send the request to whom. */
  readonly links: readonly Link[];
}
type Link = 'control-master' | 'master-slave';

const InstanceId = { instance_id: Int };

export const Requests = {
  list_slaves: { request: Strict({}), response: { list: Type.Array(SlaveListItem) }, links: ['control-master'] },
  list_instances: { request: Strict({}), response: { list: Type.Array(InstanceListItem) }, links: ['control-master'] },
  create_instance: { request: Strict({ serialized_config: SerializedConfig }), response: {}, links: ['control-master'] },
  get_instance_config: {
    request: Strict(InstanceId),
    response: { serialized_config: SerializedConfig },
    links: ['control-master'],
  },
  set_instance_config_field: {
    request: Strict({ ...InstanceId, field: Str, value: Str }),
    response: {},
    links: ['control-master'],
  },
  assign_instance_command: { request: Strict({ ...InstanceId, slave_id: Int }), response: {}, links: ['control-master'] },
  set_instance_output_subscriptions: {
    request: Strict({ instance_ids: Type.Array(Int) }),
    response: {},
    links: ['control-master'],
  },
  assign_instance: {
    request: Strict({ ...InstanceId, serialized_config: SerializedConfig }),
    response: {},
    links: ['master-slave'],
  },
  start_instance: { request: Strict(InstanceId), response: {}, links: ['control-master', 'master-slave'] },
  stop_instance: { request: Strict(InstanceId), response: {}, links: ['control-master', 'master-slave'] },
  create_save: { request: Strict(InstanceId), response: {}, links: ['control-master', 'master-slave'] },
  delete_instance: { request: Strict(InstanceId), response: {}, links: ['control-master', 'master-slave'] },
  send_rcon: {
    request: Strict({ ...InstanceId, command: Str }),
    response: { result: Str },
    links: ['control-master', 'master-slave'],
  },
  'statistics_exporter:get_metrics': {
    request: Strict({}),
    response: { results: Type.Array(Type.Unknown()) },
    links: ['master-slave'],
  },
} as const satisfies Record<string, RequestSpec>;
export type RequestName = keyof typeof Requests;

/** Requests a control sends and the master forwards, unchanged, to the slave hosting the instance. */
export const FORWARDED_REQUESTS = ['start_instance', 'stop_instance', 'create_save', 'delete_instance', 'send_rcon'] as const;
export type ForwardedRequest = (typeof FORWARDED_REQUESTS)[number];

// ---------------------------------------------------------------------------------
// Events: `<name>_event`, one way

export const Events = {
  update_instances: Strict({
    instances: Type.Array(Strict({ serialized_config: SerializedConfig, status: Type.Optional(Str) })),
  }),
  /** `output` is relayed to subscribed controls unchanged, whatever its shape. */
  instance_output: Strict({ instance_id: Int, output: Type.Unknown() }),
} as const;
export type EventName = keyof typeof Events;

/** Plugin events the master broadcasts unchanged to every other slave (as the 2020 plugins did). */
export const BROADCAST_PLUGIN_EVENTS: ReadonlySet<string> = new Set(['global_chat:chat_event', 'research_sync:finished_event']);

/** `<plugin>:<name>_(event|request|response)`. */
export const PLUGIN_TYPE = /^[A-Za-z0-9_-]+:[A-Za-z0-9_]+_(event|request|response)$/;

// ---------------------------------------------------------------------------------
// Static types (for the typed client)

export type RequestData<N extends RequestName> = Static<(typeof Requests)[N]['request']>;
export type ResponseData<N extends RequestName> = Static<TObject<(typeof Requests)[N]['response']>>;
export type EventData<N extends EventName> = Static<(typeof Events)[N]>;

// ---------------------------------------------------------------------------------
// Compiled validators, by message type

export interface Validator {
  check(data: unknown): boolean;
  /** The first problem, for "Invalid message: …" reasons. */
  explain(data: unknown): string;
}

function compile(schema: TSchema): Validator {
  const c: TypeCheck<TSchema> = TypeCompiler.Compile(schema);
  return {
    check: (data) => c.Check(data),
    explain: (data) => {
      const e = c.Errors(data).First();
      return e ? `${e.path || '/'} ${e.message}` : 'invalid';
    },
  };
}

function responseSchema(props: TProperties): TSchema {
  return Type.Union([
    Strict({ seq: Int, ...props }),
    Strict({ seq: Int, error: Str }),
  ]);
}

export const handshakeValidators = Object.fromEntries(
  Object.entries(Handshake).map(([k, s]) => [k, compile(s)]),
) as Record<HandshakeType, Validator>;

export const requestValidators = Object.fromEntries(
  Object.entries(Requests).map(([k, s]) => [`${k}_request`, compile(s.request)]),
) as Record<string, Validator>;

export const responseValidators = Object.fromEntries(
  Object.entries(Requests).map(([k, s]) => [`${k}_response`, compile(responseSchema(s.response))]),
) as Record<string, Validator>;

export const eventValidators = Object.fromEntries(
  Object.entries(Events).map(([k, s]) => [`${k}_event`, compile(s)]),
) as Record<string, Validator>;

/** Any plugin event or request: the data is an object, relayed or answered as it is. */
export const pluginDataValidator = compile(OpenObject);
/** Any plugin response: an object with an integer `seq`. */
export const pluginResponseValidator = compile(Type.Object({ seq: Int }, { additionalProperties: true }));

/** Every type each role may send to the master, with its validator. */
function inbound(role: Role): Map<string, Validator> {
  const out = new Map<string, Validator>();
  for (const [name, spec] of Object.entries(Requests) as Array<[string, RequestSpec]>) {
    if (role === 'control' && spec.links.includes('control-master')) {
      out.set(`${name}_request`, requestValidators[`${name}_request`] as Validator);
    }
    if (role === 'slave' && spec.links.includes('master-slave')) {
      out.set(`${name}_response`, responseValidators[`${name}_response`] as Validator);
    }
  }
  if (role === 'slave') {
    out.set('update_instances_event', eventValidators.update_instances_event as Validator);
    out.set('instance_output_event', eventValidators.instance_output_event as Validator);
  }
  return out;
}

export const INBOUND: Readonly<Record<Role, ReadonlyMap<string, Validator>>> = {
  slave: inbound('slave'),
  control: inbound('control'),
};

/** What the 2020 slave (client.js) accepts from the master (traces/clusterio-2020.md §1.6.4). */
export const SEED_SLAVE_ACCEPTS: ReadonlySet<string> = new Set([
  'close',
  'assign_instance_request',
  'start_instance_request',
  'create_save_request',
  'stop_instance_request',
  'delete_instance_request',
  'send_rcon_request',
  'statistics_exporter:get_metrics_request',
  'global_chat:chat_event',
  'research_sync:progress_event',
  'research_sync:finished_event',
  'research_sync:sync_technologies_response',
  'subspace_storage:remove_response',
  'subspace_storage:get_storage_response',
  'subspace_storage:update_storage_event',
]);

/** What the 2020 control CLI (clusterctl.js) accepts from the master. */
export const SEED_CONTROL_ACCEPTS: ReadonlySet<string> = new Set([
  'close',
  'hello',
  'ready',
  'instance_output_event',
  ...Object.entries(Requests)
    .filter(([, s]) => (s.links as readonly Link[]).includes('control-master'))
    .map(([k]) => `${k}_response`),
]);

export type MessageKind = 'request' | 'response' | 'event';

export function kindOf(type: string): MessageKind | undefined {
  if (type.endsWith('_request')) return 'request';
  if (type.endsWith('_response')) return 'response';
  if (type.endsWith('_event')) return 'event';
  return undefined;
}

/** `foo_request` → `foo_response`. */
export function responseTypeOf(requestType: string): string {
  return `${requestType.slice(0, -'_request'.length)}_response`;
}

/** The close codes the clusterio dialect sends, for the docs and the catalogue. */
export const clusterioCloseCodes = {
  1000: { name: 'NORMAL', description: 'The client sent `close`; the server closes its side, sending nothing', retryable: true, why: 'peer closed' },
  1001: { name: 'GOING_AWAY', description: '`Server shutting down`: shutdown', retryable: true, why: 'shutdown' },
  1002: { name: 'PROTOCOL_ERROR', description: 'A WebSocket protocol error: a reserved bit or opcode, an unmasked or badly fragmented frame, a control frame over 125 bytes, an invalid close code (socket layer, no `close` frame)', retryable: false },
  1007: { name: 'INVALID_PAYLOAD', description: 'A text frame that is not UTF-8 (socket layer, no `close` frame)', retryable: false },
  1008: { name: 'POLICY_VIOLATION', description: '`Invalid handshake`: before registering, bad JSON (including JSON nested deeper than 128 levels), a bad envelope, a type other than `register_*`/`resume`/`close`, register data failing its schema; at start-up, while the registry is still being read from the store, more than 8 frames or more than 4 × `preAuthMaxBytes` sent before it is read. `Handshake timeout`: no register/resume within 2 × heartbeatInterval. `Registered from another connection` / `Resumed from another connection`: the same slave id registered again / the session resumed on another socket. `Kicked by an operator`: `DELETE /api/v1/connections/:id`', retryable: false, why: 'protocol error' },
  1009: { name: 'MESSAGE_TOO_BIG', description: '`Frame too big before the handshake (at most N bytes)`: before `ready`/`continue`, a frame over `preAuthMaxBytes` (not parsed). No `close` frame: a frame over `limits.maxPayload` (socket layer); before the handshake is accepted, a frame over 4 × `preAuthMaxBytes`, refused at its header before it is buffered', retryable: false, why: 'protocol error' },
  1011: { name: 'INTERNAL_ERROR', description: '`Internal error`: a bug while handling a frame', retryable: true, why: 'internal error' },
  3008: { name: 'TIMEOUT', description: '`Ping timeout`: a seed client answered no ping (and sent nothing) for 2 × heartbeatInterval (retry). `Heartbeat timeout`: a session client sent no `heartbeat` for 2 × heartbeat_interval (resume)', retryable: true, why: 'ping timeout', retry: 'yes; a session client resumes' },
  4000: { name: 'INVALID_MESSAGE', description: '`Invalid message: …`: after ready, bad JSON, JSON nested deeper than 128 levels, an extra envelope property, a non-integer seq, a binary frame, an unknown type, a type this role may not send, data failing its schema, a response to a seq the master never sent (or of the wrong type)', retryable: false, why: 'protocol error' },
  4003: { name: 'AUTHENTICATION_FAILED', description: '`Authentication failed`: a token that is not an HS256 JWT signed with authSecret for this role (and slave id)', retryable: false, why: 'refused' },
  4008: { name: 'SLOW_CONSUMER', description: '`Slow consumer`: more than 4 MiB unsent', retryable: true, why: 'slow consumer', retry: 'resume' },
} as const;

/** The close codes by name (the table above describes them). */
export const ClusterioClose = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TIMEOUT: 3008,
  INVALID_MESSAGE: 4000,
  AUTHENTICATION_FAILED: 4003,
  SLOW_CONSUMER: 4008,
} as const satisfies Record<string, keyof typeof clusterioCloseCodes>;

/** Reasons carried by the server's `close` frames. */
export const CloseReason = {
  INVALID_HANDSHAKE: 'Invalid handshake',
  HANDSHAKE_TIMEOUT: 'Handshake timeout',
  AUTH_FAILED: 'Authentication failed',
  REPLACED: 'Registered from another connection',
  RESUMED_ELSEWHERE: 'Resumed from another connection',
  PING_TIMEOUT: 'Ping timeout',
  HEARTBEAT_TIMEOUT: 'Heartbeat timeout',
  SHUTDOWN: 'Server shutting down',
  KICKED: 'Kicked by an operator',
  SLOW_CONSUMER: 'Slow consumer',
  INTERNAL: 'Internal error',
  TOO_BIG_BEFORE_AUTH: 'Frame too big before the handshake',
} as const;
