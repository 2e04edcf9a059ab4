import { jwtVerify, SignJWT } from 'jose';
import { idOf, isLosslessNumber, parseTree } from '../../protocols/clusterio/codec.js';

/**
 * Clusterio tokens: HS256 JWTs signed with the dialect's `authSecret` (its UTF-8
 * bytes, as the 2020 master's jsonwebtoken used a string secret). A slave token
 * carries `{aud: "slave", id}`; a control token `{aud: "control"}`. Tokens do not
 * expire unless they carry `exp`.
 */

export type TokenClaims = { readonly aud: 'slave'; readonly id: string } | { readonly aud: 'control' };

function key(secret: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(secret);
}

/** Mints a token. A slave id is written as a JSON number (an integer, any size). */
export async function mintToken(secret: string, claims: TokenClaims, nowMs: number = Date.now()): Promise<string> {
  const iat = Math.floor(nowMs / 1000);
  if (claims.aud === 'control') {
    return new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setAudience('control').setIssuedAt(iat).sign(key(secret));
  }
  if (!/^[+-]?\d+$/.test(claims.id.trim())) throw new TypeError(`a slave id must be an integer, not "${claims.id}"`);
  const id = BigInt(claims.id.trim()).toString();
  if (Number.isSafeInteger(Number(id))) {
    return new SignJWT({ id: Number(id) }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setAudience('slave').setIssuedAt(iat).sign(key(secret));
  }
  // Beyond 2^53: jose would round a JS number, so the payload is written by hand and signed as-is.
  return signRaw(secret, `{"id":${id},"aud":"slave","iat":${iat}}`);
}

async function signRaw(secret: string, payloadJson: string): Promise<string> {
  const { createHmac } = await import('node:crypto');
  const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64url');
  const head = `${b64('{"alg":"HS256","typ":"JWT"}')}.${b64(payloadJson)}`;
  return `${head}.${createHmac('sha256', key(secret)).update(head).digest('base64url')}`;
}

/**
 * The HMAC key of one `authSecret`, imported once: a check (of a good token or of junk
 * signed with another key) never imports it again. Built anew when the secret changes
 * (SIGHUP reload).
 */
export class TokenVerifier {
  readonly #key: Promise<CryptoKey | null>;

  constructor(secret: string) {
    // A key that cannot be imported (an empty secret) refuses every token.
    this.#key = crypto.subtle.importKey('raw', key(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify']).catch(() => null);
  }

  /** See verifyToken. */
  async verify(token: string, expect: TokenClaims, nowMs: number): Promise<boolean> {
    const k = await this.#key;
    return k !== null && checkToken(k, token, expect, nowMs);
  }
}

/**
 * Checks a token for a role: signature (HS256 only), audience, `exp`/`nbf` against
 * `nowMs`, and for a slave that the token's `id` is the id being registered. Resolves
 * false on any failure; never throws. (Imports the key on each call: for one check;
 * the dialect keeps a TokenVerifier.)
 */
export async function verifyToken(secret: string, token: string, expect: TokenClaims, nowMs: number): Promise<boolean> {
  return checkToken(key(secret), token, expect, nowMs);
}

async function checkToken(k: CryptoKey | Uint8Array, token: string, expect: TokenClaims, nowMs: number): Promise<boolean> {
  try {
    await jwtVerify(token, k, { algorithms: ['HS256'], audience: expect.aud, currentDate: new Date(nowMs) });
  } catch {
    return false;
  }
  if (expect.aud === 'control') return true;
  // Read the id from the payload losslessly, so ids beyond 2^53 compare exactly.
  try {
    const payload = parseTree(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8'));
    if (typeof payload !== 'object' || payload === null || Array.isArray(payload) || isLosslessNumber(payload)) return false;
    const raw = (payload as Record<string, unknown>).id;
    const id = typeof raw === 'string' && /^-?\d+$/.test(raw) ? BigInt(raw).toString() : idOf(raw);
    return id !== undefined && id === expect.id;
  } catch {
    return false;
  }
}
