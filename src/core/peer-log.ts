import { isLosslessNumber, parse, stringify } from 'lossless-json';
import type { Logger } from 'pino';
import { LogLimiter } from './ratelimit.js';

/**
 * The one way every dialect's peers show up in the log (docs/operations-log.md):
 * connected and state changes at debug, identified and gone at info, failed
 * authentications at warn (rate-limited per dialect and remote address), every frame
 * in and out at trace (size-capped, secrets redacted). The core calls it from the
 * transport and from Connection; dialects reach it through their Connection. It never
 * parses a dialect's frames beyond generic JSON redaction.
 */

import type { GoneWhy } from '../common/errors.js';

export type { GoneWhy };

/** What the log needs to know of a connection. */
export interface PeerRef {
  readonly id: string;
  readonly dialect: string;
  readonly remoteAddress: string;
  readonly identity: string | undefined;
}

/** Frames longer than this are cut in the trace line (the full size is in `bytes`). */
export const TRACE_FRAME_CHARS = 512;

/** JSON keys whose values never reach the log. */
const SECRET_KEY = /token|secret|passw|authori[sz]ation|^auth$|jwt|api_?key|credential|cookie/i;
export const REDACTED = '[redacted]';

export interface PeerLogOptions {
  logger: Logger;
  now: () => number;
  /** The configured secrets: scrubbed from frame text wherever they appear. */
  secrets?: () => readonly string[];
}

export class PeerLog {
  readonly #logger: Logger;
  readonly #secrets: () => readonly string[];
  readonly #limit: LogLimiter;
  /** Whether frames are logged (trace); checked before any work on the hot path. */
  readonly frames: boolean;

  constructor(opts: PeerLogOptions) {
    this.#logger = opts.logger;
    this.#secrets = opts.secrets ?? (() => []);
    this.#limit = new LogLimiter(opts.now, { perSecond: 0.1, burst: 5 });
    this.frames = opts.logger.isLevelEnabled('trace');
  }

  connected(conn: PeerRef, path: string): void {
    this.#logger.debug({ event: 'peer.connected', dialect: conn.dialect, conn: conn.id, remote: conn.remoteAddress, path }, 'peer connected');
  }

  identified(conn: PeerRef, previous: string | undefined): void {
    const fields = { event: 'peer.identified', dialect: conn.dialect, conn: conn.id, remote: conn.remoteAddress, identity: conn.identity };
    if (previous === undefined) this.#logger.info(fields, `${conn.dialect}: peer identified`);
    else this.#logger.debug({ ...fields, previous }, `${conn.dialect}: peer identity changed`);
  }

  gone(conn: PeerRef, code: number, reason: string, why: GoneWhy): void {
    const fields = { event: 'peer.gone', dialect: conn.dialect, conn: conn.id, remote: conn.remoteAddress, identity: conn.identity, code, reason, why };
    // A socket that never identified is not a peer the operator knows: debug.
    if (conn.identity !== undefined) this.#logger.info(fields, `${conn.dialect}: peer gone`);
    else this.#logger.debug(fields, `${conn.dialect}: connection closed before identifying`);
  }

  /** A failed authentication (warn), at most a few per dialect and remote address (see ratelimit.ts). */
  authFailed(dialect: string, remote: string, detail: string, conn?: string): void {
    const suppressed = this.#limit.allow(`${dialect}\u0000${remote}`);
    if (suppressed === undefined) return;
    this.#logger.warn(
      { event: 'peer.auth_failed', dialect, remote, ...(conn !== undefined ? { conn } : {}), detail, ...(suppressed > 0 ? { suppressed } : {}) },
      `${dialect}: authentication failed`,
    );
  }

  /** A dialect's state change for one peer (debug). */
  state(conn: PeerRef, from: string, to: string): void {
    this.#logger.debug({ event: 'peer.state', dialect: conn.dialect, conn: conn.id, from, to }, `${conn.dialect}: peer state`);
  }

  /** One frame (trace). Call only when `frames` is true. */
  frame(conn: PeerRef, dir: 'in' | 'out', data: Buffer | string, binary = false): void {
    const bytes = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    const fields: Record<string, unknown> = { event: 'peer.frame', dialect: conn.dialect, conn: conn.id, dir, bytes };
    if (!binary) fields.frame = redactFrame(typeof data === 'string' ? data : data.toString('utf8'), this.#secrets());
    this.#logger.trace(fields, `${conn.dialect}: frame ${dir}`);
  }
}

/**
 * A frame's text as it may be logged: the values of secret-looking JSON keys replaced,
 * every configured secret scrubbed wherever it appears, and cut to TRACE_FRAME_CHARS.
 */
export function redactFrame(text: string, secrets: readonly string[]): string {
  let out = text;
  const c = text.trimStart()[0];
  if (c === '{' || c === '[') {
    try {
      // Lossless: a frame's 64-bit ids keep their digits in the log.
      out = stringify(redactValue(parse(text))) ?? '';
    } catch {
      out = text.replace(/("[^"\\]*(?:token|secret|passw|authori[sz]ation|jwt|api_?key|credential|cookie)[^"\\]*"\s*:\s*)"(?:[^"\\]|\\.)*"/gi, `$1"${REDACTED}"`);
    }
  }
  for (const s of secrets) if (s.length >= 4 && out.includes(s)) out = out.split(s).join(REDACTED);
  if (out.length > TRACE_FRAME_CHARS) {
    out = out.slice(0, TRACE_FRAME_CHARS);
    // Scrub again: a cut may not leave the start of a secret behind.
    for (const s of secrets) {
      for (let n = Math.min(s.length - 1, out.length); n >= 4; n--) {
        if (out.endsWith(s.slice(0, n))) {
          out = out.slice(0, -n);
          break;
        }
      }
    }
    out += '…';
  }
  return out;
}

function redactValue(v: unknown, depth = 0): unknown {
  if (depth > 32 || v === null || typeof v !== 'object' || isLosslessNumber(v)) return v;
  if (Array.isArray(v)) return v.map((x) => redactValue(x, depth + 1));
  const obj = v as Record<string, unknown>;
  // `{field: "factorio.rcon_password", value: "…"}`: a value named by a sibling.
  const named = [obj.field, obj.name, obj.key].some((n) => typeof n === 'string' && SECRET_KEY.test(n));
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(obj)) {
    const secret = SECRET_KEY.test(k) || (named && k === 'value');
    out[k] = secret && x !== null && x !== undefined && x !== '' ? REDACTED : redactValue(x, depth + 1);
  }
  return out;
}
