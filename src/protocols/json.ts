/**
 * One cheap pass over a frame's JSON text, shared by every dialect's codec, that
 * answers two questions before anything parses it:
 *
 * - How deep does it nest? Frames nested deeper than `MAX_JSON_DEPTH` are refused
 *   with the dialect's bad-message close. (`JSON.parse` is iterative and copes with
 *   any depth, but the lossless parser and every recursive walk over a parsed tree
 *   would overflow the stack a few thousand levels down.)
 * - Could a plain `JSON.parse` change any number? It cannot when every number token
 *   is an integer literal of at most 15 digits and not `-0`: such a number is a
 *   safe integer and `String(Number(token)) === token`. Only when some token is
 *   longer (a Discord snowflake, an INT64), has a fraction or an exponent, or is
 *   `-0`, does a codec need the slower big-int-safe parse.
 *
 * The scan does not validate: on malformed text its answers mean nothing, and the
 * parse that follows rejects the text.
 */

/** How deep any frame may nest (arrays and objects). Documented in each dialect's page. */
export const MAX_JSON_DEPTH = 128;

export interface JsonScan {
  /** The text nests deeper than the limit it was scanned with (the scan stopped there). */
  readonly tooDeep: boolean;
  /** Every number token reads back digit for digit through a JS number. */
  readonly exact: boolean;
  /** How many number tokens do not (when the scan went to the end). */
  readonly inexact: number;
  /** Object members in the text (colons outside strings), to find duplicate keys after JSON.parse. */
  readonly members: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Scans `text` for nesting depth and for numbers a JS number would not reproduce. */
export function scanJson(text: string, maxDepth: number = MAX_JSON_DEPTH): JsonScan {
  const n = text.length;
  let depth = 0;
  let inexact = 0;
  let members = 0;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = stringEnd(text, i + 1);
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      // { [
      if (++depth > maxDepth) return { tooDeep: true, exact: inexact === 0, inexact, members };
    } else if (c === 0x7d || c === 0x5d) {
      // } ]
      depth--;
    } else if (c === 0x3a) {
      // :
      members++;
    } else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      // A number token: '-'? digits ('.' digits)? ([eE] [+-]? digits)?
      const start = i;
      let digits = 0;
      let plain = true;
      if (c === 0x2d) i++;
      const first = text.charCodeAt(i);
      for (; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d >= 0x30 && d <= 0x39) digits++;
        else if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) plain = false;
        else break;
      }
      // -0 reads back as 0.
      if (!plain || digits > 15 || (c === 0x2d && first === 0x30 && i - start === 2)) inexact++;
      continue;
    }
    i++;
  }
  return { tooDeep: false, exact: inexact === 0, inexact, members };
}

/**
 * Whether `text` nests deeper than `maxDepth`: the same answer as
 * `scanJson(text, maxDepth).tooDeep`, for codecs that need nothing else from the scan.
 * Nesting deeper than `maxDepth` needs more than `maxDepth` opening brackets, so a
 * frame with fewer (every bus frame of a few hundred bytes) is answered by counting
 * `{` and `[` with `indexOf`, without walking the text character by character.
 */
export function tooDeep(text: string, maxDepth: number = MAX_JSON_DEPTH): boolean {
  if (text.length <= maxDepth) return false;
  let opens = 0;
  for (let i = text.indexOf('{'); i >= 0 && opens <= maxDepth; i = text.indexOf('{', i + 1)) opens++;
  for (let i = text.indexOf('['); i >= 0 && opens <= maxDepth; i = text.indexOf('[', i + 1)) opens++;
  return opens > maxDepth && scanJson(text, maxDepth).tooDeep;
}

/**
 * Parses `text` (already scanned into `scan`) as cheaply as its numbers allow:
 *
 * - every number exact: `JSON.parse`, numbers as JS numbers;
 * - else, with `toNumber` and at most one such number per DENSE_CHARS characters: `JSON.parse` of a copy in which each inexact number token
 *   is a marked string, which `toNumber(token)` then turns into the codec's number
 *   node (exact ones stay JS numbers). This keeps the big-int-safe result without
 *   the lossless parser's cost on everything else in the frame (its strings, mostly);
 * - else, or when the text holds the escape `\u0000` (which the marker uses), or a
 *   token that is no JSON number: `lossless`, the codec's big-int-safe parser.
 *
 * Duplicate keys (which JSON.parse would quietly collapse) also go to `lossless`, so
 * that the codec treats them exactly as it always has. Throws what the parser throws.
 */
export function parseJson(text: string, scan: JsonScan, lossless: (text: string) => unknown, toNumber?: (token: string) => unknown): unknown {
  if (scan.exact) {
    const value: unknown = JSON.parse(text);
    return countMembers(value) === scan.members ? value : lossless(text);
  }
  // Dense with such numbers (a list of snowflakes), the lossless parser is the faster one.
  if (toNumber === undefined || scan.inexact * DENSE_CHARS > text.length) return lossless(text);
  const marked = markInexact(text);
  if (marked === undefined) return lossless(text);
  const root = { v: JSON.parse(marked) as unknown };
  const members = restore(root, 'v', toNumber);
  return members === scan.members ? root.v : lossless(text);
}

/** Fewer characters than this per inexact number, and marking costs more than it saves (bench/json-cost.ts). */
const DENSE_CHARS = 64;

/** Marks an inexact number token for JSON.parse: `"\u0000<token>"`. */
const MARK = '\\u0000';
const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

/** `text` with every inexact number token turned into a marked string, or undefined when that cannot be done safely. */
function markInexact(text: string): string | undefined {
  if (text.includes(MARK)) return undefined;
  const n = text.length;
  const out: string[] = [];
  let from = 0;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = stringEnd(text, i + 1);
      continue;
    }
    if (c !== 0x2d && !(c >= 0x30 && c <= 0x39)) {
      i++;
      continue;
    }
    const start = i;
    let digits = 0;
    let plain = true;
    if (c === 0x2d) i++;
    for (; i < n; i++) {
      const d = text.charCodeAt(i);
      if (d >= 0x30 && d <= 0x39) digits++;
      else if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) plain = false;
      else break;
    }
    const token = text.slice(start, i);
    if (plain && digits <= 15 && token !== '-0') continue;
    if (!JSON_NUMBER.test(token)) return undefined;
    out.push(text.slice(from, start), '"', MARK, token, '"');
    from = i;
  }
  out.push(text.slice(from));
  return out.join('');
}

/**
 * Replaces the marked strings under `holder[key]` with `toNumber(token)`, and counts
 * object members (depth is at most MAX_JSON_DEPTH, so recursion is safe).
 */
function restore(holder: Record<string, unknown> | unknown[], key: string | number, toNumber: (token: string) => unknown): number {
  const v = (holder as Record<string, unknown>)[key];
  if (typeof v === 'string') {
    if (v.charCodeAt(0) === 0) (holder as Record<string, unknown>)[key] = toNumber(v.slice(1));
    return 0;
  }
  if (typeof v !== 'object' || v === null) return 0;
  let n = 0;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) n += restore(v, i, toNumber);
    return n;
  }
  for (const k in v) n += 1 + restore(v as Record<string, unknown>, k, toNumber);
  return n;
}

/** Own keys of every object in a parsed value (at most MAX_JSON_DEPTH deep, so recursion is safe). */
function countMembers(v: unknown): number {
  if (typeof v !== 'object' || v === null) return 0;
  let n = 0;
  if (Array.isArray(v)) {
    for (const x of v) if (typeof x === 'object' && x !== null) n += countMembers(x);
    return n;
  }
  for (const k in v) {
    n++;
    const x = (v as Record<string, unknown>)[k];
    if (typeof x === 'object' && x !== null) n += countMembers(x);
  }
  return n;
}

/** The index after the closing quote of a string whose body starts at `i` (or the text's length). */
function stringEnd(text: string, i: number): number {
  for (;;) {
    const q = text.indexOf('"', i);
    if (q < 0) return text.length;
    let k = q - 1;
    while (k >= i && text.charCodeAt(k) === BACKSLASH) k--;
    // An even run of backslashes before the quote escapes itself, not the quote.
    if ((q - 1 - k) % 2 === 0) return q + 1;
    i = q + 1;
  }
}

/** The detail a codec reports for a frame nested too deep. */
export const TOO_DEEP_DETAIL = `JSON nested deeper than ${MAX_JSON_DEPTH} levels`;
