/**
 * The one catalogue of Muster's errors and of the WebSocket close codes that the core
 * itself uses. Dialects declare their own close codes as a `CloseCodeTable`; the
 * docs list them all. Every error has a stable `code`, a `name`, and says whether the
 * caller may retry. An error that HTTP answers with has its `status`: the body is
 * `{error: <name>, message}` (`httpError`). Every entry is used somewhere in `src/`
 * (test/unit/errors.test.ts checks it).
 */

/** Why a peer is gone, as the `why` field of the "peer gone" line. */
export type GoneWhy =
  | 'peer closed'
  | 'dead'
  | 'ping timeout'
  | 'superseded'
  | 'kicked'
  | 'slow consumer'
  | 'shutdown'
  | 'refused'
  | 'name in use'
  | 'protocol error'
  | 'halted'
  | 'internal error'
  | 'closed by server';

export interface ErrorSpec {
  readonly code: string;
  readonly message: string;
  readonly retryable: boolean;
  /** The HTTP status this error is answered with, when HTTP answers with it. */
  readonly status?: number;
}

export const Errors = {
  CONFIG_INVALID: { code: 'MUSTER_CONFIG_INVALID', message: 'The configuration is invalid', retryable: false },
  STORE_UNAVAILABLE: { code: 'MUSTER_STORE_UNAVAILABLE', message: 'The store cannot be reached', retryable: true, status: 500 },
  BAD_REQUEST: { code: 'MUSTER_BAD_REQUEST', message: 'The request is malformed', retryable: false, status: 400 },
  UNAUTHORIZED: { code: 'MUSTER_UNAUTHORIZED', message: 'Missing or wrong credentials', retryable: false, status: 401 },
  NOT_FOUND: { code: 'MUSTER_NOT_FOUND', message: 'No such resource', retryable: false, status: 404 },
  RATE_LIMITED: { code: 'MUSTER_RATE_LIMITED', message: 'Too many requests from this address', retryable: true, status: 429 },
  INTERNAL: { code: 'MUSTER_INTERNAL', message: 'An unexpected server error', retryable: true, status: 500 },
  UNAVAILABLE: { code: 'MUSTER_UNAVAILABLE', message: 'The server cannot take this now', retryable: true, status: 503 },
  SHUTTING_DOWN: { code: 'MUSTER_SHUTTING_DOWN', message: 'The server is shutting down', retryable: true, status: 503 },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorName = keyof typeof Errors;

/** The errors HTTP answers with. */
export type HttpErrorName = { [K in ErrorName]: (typeof Errors)[K] extends { readonly status: number } ? K : never }[ErrorName];

export interface HttpErrorAnswer {
  readonly status: number;
  readonly body: { readonly error: HttpErrorName; readonly message: string };
}

/** An HTTP error answer: the entry's status and `{error: <name>, message}`. */
export function httpError(name: HttpErrorName, message: string): HttpErrorAnswer {
  return { status: Errors[name].status, body: { error: name, message } };
}

export class MusterError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  override readonly name: ErrorName;

  constructor(name: ErrorName, detail?: string, options?: { cause?: unknown }) {
    const spec = Errors[name];
    super(detail ? `${spec.message}: ${detail}` : spec.message, options);
    this.name = name;
    this.code = spec.code;
    this.retryable = spec.retryable;
  }
}

export function isMusterError(err: unknown, name?: ErrorName): err is MusterError {
  return err instanceof MusterError && (name === undefined || err.name === name);
}

/** RFC 6455 codes that the core sends itself. */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
} as const;

export interface CloseCodeSpec {
  /** A short stable name, used in logs and metrics. */
  readonly name: string;
  readonly description: string;
  /** May the client reconnect and expect it to work? */
  readonly retryable: boolean;
  /** What a client should do, for the docs' "retry?" column when yes/no says too little. */
  readonly retry?: string;
  /** When the server closes with this code: why the peer is gone, for the "peer gone" log line. */
  readonly why?: GoneWhy;
}

export type CloseCodeTable = Readonly<Record<number, CloseCodeSpec>>;

/** Closes any dialect may see, because the core or the socket layer sends them. */
export const coreCloseCodes: CloseCodeTable = {
  1000: { name: 'NORMAL', description: 'Clean goodbye', retryable: true },
  1001: { name: 'GOING_AWAY', description: 'The server is shutting down', retryable: true },
  1007: { name: 'INVALID_PAYLOAD', description: 'A text frame that is not UTF-8 (sent by the socket layer)', retryable: false },
  1008: { name: 'POLICY_VIOLATION', description: 'Kicked by an operator through the admin API', retryable: true },
  1009: { name: 'MESSAGE_TOO_BIG', description: 'A frame over limits.maxPayload (socket layer)', retryable: false },
  1011: { name: 'INTERNAL_ERROR', description: 'An unexpected server error while handling the frame', retryable: true },
};

/** Is this a code a server may put in a close frame (RFC 6455 §7.4)? */
export function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}
