/**
 * The gamelist protocol's integers: INT64 ids kept as the digits the peer wrote, the
 * smaller integer ranges, and a request-id counter. Pure; no JS number ever holds an
 * INT64.
 */

/** A JSON number as written in the source text. */
export class JsonNumber {
  constructor(readonly text: string) {}
}

/** The text of an INT64, exactly as the peer wrote it (e.g. "-1", "9223372036854775807"). */
export type Int64Text = string;

const INTEGER_LITERAL = /^-?(?:0|[1-9][0-9]*)$/;

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;
export const INT32_MIN = -(2 ** 31);
export const INT32_MAX = 2 ** 31 - 1;
export const UINT16_MAX = 2 ** 16 - 1;
export const UINT32_MAX = 2 ** 32 - 1;

/** The digits of an integer literal within [min, max], or undefined. Never goes through a JS number. */
export function integerText(v: unknown, min: bigint, max: bigint): string | undefined {
  // A JS number here came from text whose every number is a short integer literal.
  const t = typeof v === 'number' ? String(v) : v instanceof JsonNumber ? v.text : undefined;
  if (t === undefined) return undefined;
  // A fraction or an exponent is not an integer in this protocol; 21 chars cover any INT64.
  if (t.length > 21 || !INTEGER_LITERAL.test(t)) return undefined;
  const b = BigInt(t);
  return b < min || b > max ? undefined : t;
}

export function smallInt(v: unknown, min: number, max: number): number | undefined {
  const t = integerText(v, BigInt(min), BigInt(max));
  return t === undefined ? undefined : Number(t);
}

/** Is `text` a JSON integer literal in the INT64 range (safe to splice into a frame)? */
export function isInt64Text(text: string): boolean {
  return integerText(new JsonNumber(text), INT64_MIN, INT64_MAX) !== undefined;
}

/** The canonical form of an INT64 text, for matching ids ("-0" and "0" are one id). */
export function canonicalInt64(text: Int64Text): string {
  return BigInt(text).toString();
}

/**
 * Request ids for one sender: INT64, counting up from `start`, wrapping from
 * 2^63−1 back to 1. Kept as a bigint so they never lose a digit.
 */
export class Int64Counter {
  #next: bigint;
  constructor(start: bigint = 1n) {
    this.#next = start;
  }
  next(): Int64Text {
    const id = this.#next;
    this.#next = id >= INT64_MAX ? 1n : id + 1n;
    return id.toString();
  }
  /** Where the next id starts (tests use it to reach the top of the range). */
  reset(start: bigint): void {
    if (start < INT64_MIN || start > INT64_MAX) throw new RangeError('not an INT64');
    this.#next = start;
  }
}
