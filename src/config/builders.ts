/**
 * The building blocks of the config schema: the custom keywords `load.ts` interprets,
 * the duration and size parsers, and the leaf and section builders every section
 * (the core's in `schema.ts`, each dialect's in `dialects/<d>.ts`) is made of.
 */
import { Type, type Static, type StaticDecode, type TArray, type TObject, type TSchema, type TString, type TInteger, type TBoolean, type TLiteral, type TOptional } from '@sinclair/typebox';

/** Custom schema keyword: how `load.ts` normalizes a leaf before checking it. */
export const MusterKindKey = 'x-muster-kind';
/** Custom schema keyword: what a value must look like, in the words of an error message. */
export const ExpectedKey = 'x-muster-expected';
/** Custom schema keyword: the value is a secret, never echoed in an error message. */
export const SecretKey = 'x-muster-secret';
/**
 * Custom schema keyword: a secret that start-up fills when it is not configured, from
 * `<dataDir>/secrets.json` or newly generated (`secrets.ts`), unless its section is
 * disabled (`enabled: false`).
 */
export const GeneratedKey = 'x-muster-generated';

/** The longest delay a Node.js timer honours (2^31 - 1 ms, about 24.8 days). */
export const MAX_DURATION_MS = 2_147_483_647;

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_PART = /(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)/gy;

/**
 * Parses a duration: a non-negative number of milliseconds, or a string such as
 * `"250ms"`, `"30s"`, `"1.5s"`, `"5m"`, `"1h"`, `"1d"`, `"1m30s"`, or `"1500"` (ms).
 * Returns the number of milliseconds (rounded to an integer for strings), or
 * `undefined` when the value is not a duration or is out of range.
 */
export function parseDuration(value: unknown): number | undefined {
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else if (typeof value === 'string') {
    const text = value.trim().toLowerCase();
    if (text === '') return undefined;
    if (/^\d+(\.\d+)?$/.test(text)) {
      ms = Number(text);
    } else {
      DURATION_PART.lastIndex = 0;
      let total = 0;
      let end = 0;
      let match: RegExpExecArray | null;
      while ((match = DURATION_PART.exec(text)) !== null) {
        const unit = DURATION_UNITS[match[2] ?? ''];
        if (unit === undefined) return undefined;
        total += Number(match[1]) * unit;
        end = DURATION_PART.lastIndex;
        // allow blanks between parts ("1m 30s")
        while (text[DURATION_PART.lastIndex] === ' ') DURATION_PART.lastIndex += 1;
      }
      if (end === 0 || end !== text.length) return undefined;
      ms = Math.round(total);
    }
  } else {
    return undefined;
  }
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_DURATION_MS) return undefined;
  return ms;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1000,
  k: 1024,
  kib: 1024,
  mb: 1000 ** 2,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  gb: 1000 ** 3,
  g: 1024 ** 3,
  gib: 1024 ** 3,
};

/**
 * Parses a byte size: a non-negative integer, or a string such as `"32KiB"`,
 * `"4MiB"`, `"1MB"` (SI units are powers of 1000, IEC units and bare `K`/`M`/`G`
 * powers of 1024). Returns the number of bytes, or `undefined` when the value is not
 * a whole number of bytes.
 */
export function parseBytes(value: unknown): number | undefined {
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value;
  } else if (typeof value === 'string') {
    const match = /^(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)$/i.exec(value.trim());
    if (!match) return undefined;
    const unit = SIZE_UNITS[(match[2] ?? '').toLowerCase()];
    if (unit === undefined) return undefined;
    bytes = Number(match[1]) * unit;
  } else {
    return undefined;
  }
  if (!Number.isSafeInteger(bytes) || bytes < 0) return undefined;
  return bytes;
}

// ---------------------------------------------------------------------------------
// Leaf builders

const DURATION_EXPECTED = 'a duration in ms or a string like "30s"';
const BYTES_EXPECTED = 'a size in bytes or a string like "32KiB" or "4MiB"';

/** `1500` → "1.5s", `100` → "100ms": a minimum in the words of an error message. */
function formatMs(ms: number): string {
  return ms >= 1000 && ms % 100 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * A duration in milliseconds, at least `minMs`; the file may use `"30s"`-style strings.
 * Every duration has a minimum (README, "Durations"): intervals and the deadlines a peer
 * must meet are at least 1s, waits inside the server at least 100ms, and only windows
 * where 0 means "at once" may be 0. A zero interval would spin or make a timer throw.
 */
export function Duration(defaultMs: number, minMs: number) {
  const expected = minMs > 0 ? `${DURATION_EXPECTED}, at least ${formatMs(minMs)}` : DURATION_EXPECTED;
  return Type.Transform(
    Type.Union([Type.Number({ minimum: minMs, maximum: MAX_DURATION_MS }), Type.String()], {
      default: defaultMs,
      [MusterKindKey]: 'duration',
      [ExpectedKey]: expected,
      minimumMs: minMs,
    }),
  )
    .Decode((value): number => {
      const ms = parseDuration(value);
      if (ms === undefined || ms < minMs) throw new TypeError(`expected ${expected}`);
      return ms;
    })
    .Encode((ms) => ms);
}

/** A size in bytes (at least `min`); the file may use `"32KiB"`-style strings. */
export function Bytes(defaultBytes: number, min = 1) {
  return Type.Transform(
    Type.Union([Type.Integer({ minimum: min }), Type.String()], {
      default: defaultBytes,
      [MusterKindKey]: 'bytes',
      [ExpectedKey]: min > 0 ? `${BYTES_EXPECTED}, at least ${min}` : BYTES_EXPECTED,
      minimumBytes: min,
    }),
  )
    .Decode((value): number => {
      const bytes = parseBytes(value);
      if (bytes === undefined || bytes < min) throw new TypeError(`expected ${BYTES_EXPECTED}`);
      return bytes;
    })
    .Encode((bytes) => bytes);
}

export function Int(defaultValue: number, minimum: number, maximum?: number): TInteger {
  const range = maximum === undefined ? `≥ ${minimum}` : `from ${minimum} to ${maximum}`;
  return Type.Integer({
    default: defaultValue,
    minimum,
    ...(maximum === undefined ? {} : { maximum }),
    [ExpectedKey]: `an integer ${range}`,
  });
}

export function Bool(defaultValue: boolean): TBoolean {
  return Type.Boolean({ default: defaultValue, [ExpectedKey]: 'true or false' });
}

export function Str(defaultValue?: string): TString {
  return Type.String({
    minLength: 1,
    ...(defaultValue === undefined ? {} : { default: defaultValue }),
    [ExpectedKey]: 'a non-empty string',
  });
}

/** A secret that is filled at start when absent (`GeneratedKey`); the type says so, for `Resolved`. */
export type TGenerated<T extends TSchema> = TOptional<T> & { readonly [GeneratedKey]: true };

/** A secret string: optional (generated at first start when absent), never echoed. */
export function Secret(): TGenerated<TString> {
  return Type.Optional(
    Type.String({ minLength: 1, [SecretKey]: true, [GeneratedKey]: true, [ExpectedKey]: 'a non-empty string' }),
  ) as TGenerated<TString>;
}

/** A list of secrets: optional (one generated at first start when absent), never echoed. */
export function SecretList(): TGenerated<TArray<TString>> {
  return Type.Optional(
    Type.Array(Type.String({ minLength: 1, [SecretKey]: true, [ExpectedKey]: 'a non-empty string' }), {
      minItems: 1,
      [SecretKey]: true,
      [GeneratedKey]: true,
      [ExpectedKey]: 'a non-empty list of non-empty strings',
    }),
  ) as TGenerated<TArray<TString>>;
}

/** An optional secret string that is never generated (absent means "not set"), never echoed. */
export function OptionalSecret(): TOptional<TString> {
  return Type.Optional(Type.String({ minLength: 1, [SecretKey]: true, [ExpectedKey]: 'a non-empty string' }));
}

/** The keys of a section's generated secrets. */
export type GeneratedKeys<S extends TObject> = {
  [K in keyof S['properties']]: S['properties'][K] extends { readonly [GeneratedKey]: true } ? K : never;
}[keyof S['properties']];

/** A section's resolved config, as a dialect gets it: its generated secrets are filled. */
export type Resolved<S extends TObject> = Omit<StaticDecode<S>, GeneratedKeys<S>> & {
  [K in GeneratedKeys<S> & keyof StaticDecode<S>]-?: NonNullable<StaticDecode<S>[K]>;
};

/**
 * A section's generated secrets, checked: throws when one is missing (`resolveSecrets`
 * must run first). Returns the section typed as `Resolved`.
 */
export function resolvedSection<S extends TObject>(schema: S, section: StaticDecode<S>, name: string): Resolved<S> {
  for (const [key, prop] of Object.entries(schema.properties as Record<string, Record<string, unknown>>)) {
    if (prop[GeneratedKey] !== true) continue;
    const value = (section as Record<string, unknown>)[key];
    if (value === undefined || (Array.isArray(value) && value.length === 0)) {
      throw new Error(`${name}: ${key} must be resolved before start`);
    }
  }
  return section as Resolved<S>;
}

/** A section's secrets (every `SecretKey` property) by key: what a dialect reloads on SIGHUP. */
export function sectionSecrets(schema: TObject, section: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, prop] of Object.entries(schema.properties as Record<string, Record<string, unknown>>)) {
    if (prop[SecretKey] === true) out[key] = section[key];
  }
  return out;
}

export function Enum<T extends TLiteral<string>[]>(literals: [...T], defaultValue: Static<T[number]>) {
  const expected = `one of ${literals.map((l) => JSON.stringify(l.const)).join(', ')}`;
  return Type.Union(literals, { default: defaultValue, [ExpectedKey]: expected });
}

export function WsPath(defaultPath: string): TString {
  return Type.String({
    default: defaultPath,
    pattern: '^/[^\\s?#]*$',
    [ExpectedKey]: 'a URL path starting with "/" (no spaces, "?" or "#")',
  });
}

/** The minimum of intervals and of the deadlines a peer must meet. */
export const SECOND = 1000;

/** An object section: unknown keys are rejected, missing keys take their defaults. */
export function Section<T extends Record<string, TSchema>>(properties: T) {
  return Type.Object(properties, { additionalProperties: false, default: {} });
}

