/**
 * Frames of the clusterio link: `{seq, type, data}` with no other property.
 *
 * A frame is parsed twice: `JSON.parse` gives the view that schemas check (numbers
 * beyond 2^53 are rounded there, harmlessly: a rounded integer is still an integer),
 * and lossless-json gives the tree that is kept, stored and relayed, where every
 * number keeps its digits. Nothing that is forwarded goes through a JS number.
 */
import { isLosslessNumber, LosslessNumber, parse as losslessParse, stringify as losslessStringify } from 'lossless-json';
import { parseJson, scanJson, TOO_DEEP_DETAIL } from '../json.js';

/** A JSON value whose numbers are LosslessNumbers. */
export type LJson = null | boolean | string | LosslessNumber | LJson[] | { [key: string]: LJson };
export type LObject = { [key: string]: LJson };

export interface Envelope {
  readonly seq: number;
  readonly type: string;
  /** The data as JSON.parse sees it (for schemas). */
  readonly data: Record<string, unknown>;
  /** The data with every number kept exactly. */
  readonly tree: LObject;
}

export type EnvelopeResult =
  | { readonly ok: true; readonly env: Envelope }
  | { readonly ok: false; readonly problem: 'json' | 'malformed'; readonly detail: string };

const ENVELOPE_KEYS = new Set(['seq', 'type', 'data']);

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !isLosslessNumber(v);
}

/**
 * Parses and checks the envelope of one text frame. Frames nested deeper than
 * MAX_JSON_DEPTH are malformed. With `cheapTree` (handshake frames, which are read
 * but never kept or relayed) the lossless parse is paid only when some number in the
 * text could not be held exactly by a JS number; the tree is then the view itself.
 */
export function decodeEnvelope(text: string, cheapTree = false): EnvelopeResult {
  const scan = scanJson(text);
  if (scan.tooDeep) return { ok: false, problem: 'malformed', detail: `Malformed (${TOO_DEEP_DETAIL})` };
  let view: unknown;
  let tree: unknown;
  try {
    if (cheapTree) {
      view = JSON.parse(text);
      tree = parseJson(text, scan, losslessParse, (s) => new LosslessNumber(s));
    } else {
      view = JSON.parse(text);
      tree = losslessParse(text);
    }
  } catch (err) {
    return { ok: false, problem: 'json', detail: `Malformed JSON (${(err as Error).message})` };
  }
  if (!isPlainObject(view) || !isPlainObject(tree)) return { ok: false, problem: 'malformed', detail: 'Malformed' };
  for (const k of Object.keys(view)) {
    if (!ENVELOPE_KEYS.has(k)) return { ok: false, problem: 'malformed', detail: `Malformed (unexpected property "${k}")` };
  }
  const { seq, type, data } = view;
  if (typeof seq !== 'number' || !Number.isInteger(seq)) return { ok: false, problem: 'malformed', detail: 'Malformed (seq must be an integer)' };
  if (typeof type !== 'string') return { ok: false, problem: 'malformed', detail: 'Malformed (type must be a string)' };
  if (!isPlainObject(data)) return { ok: false, problem: 'malformed', detail: 'Malformed (data must be an object)' };
  return { ok: true, env: { seq, type, data, tree: (tree as { data: LObject }).data } };
}

/** One frame's text. `dataText` is already JSON (so relayed data is spliced, not re-encoded). */
export function encodeFrame(seq: number, type: string, dataText: string): string {
  return `{"seq":${seq},"type":${JSON.stringify(type)},"data":${dataText}}`;
}

/** JSON text of a tree, numbers verbatim. */
export function stringifyTree(value: unknown): string {
  return losslessStringify(value) ?? 'null';
}

export function parseTree(text: string): LJson {
  return losslessParse(text) as LJson;
}

/** A number node that writes exactly these digits. */
export function numberNode(digits: string): LosslessNumber {
  return new LosslessNumber(digits);
}

export { isLosslessNumber, LosslessNumber };

/**
 * The canonical decimal form of an integer id (`777`, `777.0` and `7.77e2` are all
 * "777"), or undefined when the value is not an integer. Ids are kept as these strings
 * so that ids beyond 2^53 keep every digit.
 */
export function idOf(value: unknown): string | undefined {
  let text: string;
  if (isLosslessNumber(value)) text = value.value;
  else if (typeof value === 'number') text = Number.isFinite(value) ? String(value) : '';
  else return undefined;
  if (/^-?\d+$/.test(text)) return BigInt(text).toString();
  const n = Number(text);
  if (!Number.isInteger(n)) return undefined;
  if (Number.isSafeInteger(n)) return String(n);
  // An exponent form of a big integer: expand it exactly.
  const m = /^(-?)(\d+)(?:\.(\d+))?[eE]([+-]?\d+)$/.exec(text);
  if (!m) return BigInt(n).toString();
  const [, sign, int = '', frac = '', exp = '0'] = m;
  const shift = Number(exp) - frac.length;
  const digits = `${int}${frac}`;
  if (shift < 0) return undefined;
  return BigInt(`${sign}${digits}${'0'.repeat(shift)}`).toString();
}

/** An id as a number when it is safe, else as a string (for JSON bodies of the admin API). */
export function idForHttp(id: string): number | string {
  const n = Number(id);
  return Number.isSafeInteger(n) ? n : id;
}

/** Compares two canonical integer ids numerically. */
export function compareIds(a: string, b: string): number {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}
