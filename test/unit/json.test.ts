import { LosslessNumber, parse as losslessParse, stringify as losslessStringify } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, parseJson, scanJson, tooDeep } from '../../src/protocols/json.js';

const nest = (n: number, inner = '1'): string => '['.repeat(n) + inner + ']'.repeat(n);

describe('scanJson: depth', () => {
  it(`accepts ${MAX_JSON_DEPTH} levels and refuses one more`, () => {
    expect(scanJson(nest(MAX_JSON_DEPTH)).tooDeep).toBe(false);
    expect(scanJson(nest(MAX_JSON_DEPTH + 1)).tooDeep).toBe(true);
    expect(scanJson(`{"a":${nest(MAX_JSON_DEPTH - 1)}}`).tooDeep).toBe(false);
    expect(scanJson(`{"a":${nest(MAX_JSON_DEPTH)}}`).tooDeep).toBe(true);
  });

  it('counts siblings once, not their sum', () => {
    const wide = `[${Array.from({ length: 500 }, () => nest(10)).join(',')}]`;
    expect(scanJson(wide).tooDeep).toBe(false);
  });

  it('ignores brackets inside strings, escaped quotes included', () => {
    expect(scanJson(`{"s":"${'['.repeat(1000)}"}`).tooDeep).toBe(false);
    expect(scanJson(`{"s":"\\"${'['.repeat(1000)}"}`).tooDeep).toBe(false);
    expect(scanJson(`{"s":"a\\\\", "t": ${nest(MAX_JSON_DEPTH + 1)}}`).tooDeep).toBe(true);
  });

  it('stops at the limit on a huge nesting (no stack, no full pass)', () => {
    expect(scanJson(nest(1_000_000)).tooDeep).toBe(true);
  });
});

describe('scanJson: which numbers a JS number keeps', () => {
  const exact = ['0', '7', '-7', '123456789012345', '-123456789012345', '[1,2,{"a":-3}]', '"870000000000000123"', '{"x":"1.5e9"}', 'true'];
  const inexact = ['1234567890123456', '870000000000000123', '9223372036854775807', '1.0', '1.5', '1e2', '1E2', '-0', '[-0]', '0.5', '{"a":[1,2,3e0]}'];
  for (const t of exact) it(`${t} is exact`, () => expect(scanJson(t).exact).toBe(true));
  for (const t of inexact) it(`${t} is not exact`, () => expect(scanJson(t).exact).toBe(false));

  it('exact means JSON.parse and the lossless parser write the same text back', () => {
    let seed = 42;
    const rand = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    const nums = ['0', '-0', '1', '-12', '123456789012345', '1234567890123456', '9007199254740993', '1.0', '2.50', '1e3', '-1E-2', '42'];
    for (let i = 0; i < 300; i++) {
      const parts = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => nums[Math.floor(rand() * nums.length)] as string);
      const text = `{"a":[${parts.join(',')}],"s":"${parts[0] ?? ''}"}`;
      const same = losslessStringify(losslessParse(text)) === JSON.stringify(JSON.parse(text));
      if (scanJson(text).exact) expect(same, text).toBe(true);
    }
  });
});

describe('parseJson', () => {
  const lossless = (t: string): unknown => losslessParse(t);

  it('uses JSON.parse when every number is exact', () => {
    const t = '{"a":[1,{"b":null,"c":"x:y"}],"d":{}}';
    let called = 0;
    expect(parseJson(t, scanJson(t), () => called++)).toEqual(JSON.parse(t));
    expect(called).toBe(0);
  });

  it('uses the lossless parser when a number is not exact', () => {
    const t = '{"id":870000000000000123}';
    const v = parseJson(t, scanJson(t), lossless);
    expect(losslessStringify(v)).toBe(t);
  });

  it('with toNumber, gives what the lossless parser gives, without it', () => {
    let seed = 7;
    const rand = (): number => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32;
    };
    const values = ['0', '-0', '17', '-12', '123456789012345', '870000000000000123', '-9223372036854775808', '1.0', '2.50', '1e3', '-1E-2', '"s"', '"a\\"b"', 'null', 'true', '[]', '{}'];
    let called = 0;
    const counting = (t: string): unknown => {
      called++;
      return losslessParse(t);
    };
    for (let i = 0; i < 500; i++) {
      const pick = (): string => values[Math.floor(rand() * values.length)] as string;
      // A long string keeps the big numbers sparse, as in a frame (dense ones go to the lossless parser).
      const text = `{"a":[${pick()},${pick()}],"b":{"c":${pick()},"d":"1.5"},"e":${pick()},"t":"${'t'.repeat(300)}"}`;
      const v = parseJson(text, scanJson(text), counting, (t) => new LosslessNumber(t));
      expect(losslessStringify(v), text).toBe(losslessStringify(losslessParse(text)));
    }
    expect(called).toBe(0);
  });

  it('hands a frame dense with big numbers to the lossless parser (faster there)', () => {
    const dense = `[${Array.from({ length: 50 }, (_, i) => 870000000000000000n + BigInt(i)).join(',')}]`;
    let called = 0;
    const v = parseJson(dense, scanJson(dense), (t) => (called++, losslessParse(t)), (t) => new LosslessNumber(t));
    expect(called).toBe(1);
    expect(losslessStringify(v)).toBe(dense);
  });

  it('falls back to the lossless parser when marking is not safe, so errors stay its errors', () => {
    const toNumber = (t: string): unknown => new LosslessNumber(t);
    for (const t of ['[1.2.3]', '[1e]', '[-]', '[12345678901234567,]']) {
      expect(() => parseJson(t, scanJson(t), lossless, toNumber), t).toThrow();
    }
    const escaped = `{"s":"\\u0000870000000000000123","n":870000000000000123,"t":"${'t'.repeat(100)}"}`;
    const v = parseJson(escaped, scanJson(escaped), lossless, toNumber);
    expect(losslessStringify(v)).toBe(escaped);
  });

  it('hands duplicate keys at any depth to the lossless parser, which decides as before', () => {
    for (const t of ['{"a":1,"a":2}', '{"x":{"a":1,"a":2}}', '[{"k":1},{"k":1,"k":2}]']) {
      expect(() => parseJson(t, scanJson(t), lossless), t).toThrow(/Duplicate key/);
    }
    const big = '{"a":870000000000000123,"a":1}';
    expect(() => parseJson(big, scanJson(big), lossless, (t) => new LosslessNumber(t))).toThrow(/Duplicate key/);
    // The lossless parser tolerates a repeated key with the same value; so does this.
    const same = '[{"k":1},{"k":1,"k":1}]';
    expect(losslessStringify(parseJson(same, scanJson(same), lossless))).toBe('[{"k":1},{"k":1}]');
  });

  it('keeps a "__proto__" key as data', () => {
    const t = '{"__proto__":{"x":1},"y":2}';
    const v = parseJson(t, scanJson(t), lossless) as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(['__proto__', 'y']);
  });
});

describe('tooDeep', () => {
  it('answers what scanJson(text).tooDeep answers', () => {
    const nest = (n: number, open = '[', close = ']'): string => open.repeat(n) + close.repeat(n);
    const texts = [
      '{}',
      '{"op":0,"data":{"pad":"xxxx"}}',
      nest(MAX_JSON_DEPTH),
      nest(MAX_JSON_DEPTH + 1),
      nest(MAX_JSON_DEPTH + 1, '{"a":', '}'),
      // Many brackets, but inside strings or side by side: not deep.
      `{"s":"${'['.repeat(500)}"}`,
      `[${'[],'.repeat(400)}[]]`,
      // Deep, with brackets in strings too.
      `${'['.repeat(MAX_JSON_DEPTH + 1)}"{{{"${']'.repeat(MAX_JSON_DEPTH + 1)}`,
      // Not valid JSON: the same answer as the scan either way.
      '['.repeat(MAX_JSON_DEPTH + 5),
      ']'.repeat(300) + '['.repeat(MAX_JSON_DEPTH),
    ];
    for (const t of texts) expect(tooDeep(t), t.slice(0, 40)).toBe(scanJson(t).tooDeep);
    expect(tooDeep(nest(MAX_JSON_DEPTH + 1))).toBe(true);
    expect(tooDeep(`[${'[],'.repeat(400)}[]]`)).toBe(false);
    expect(tooDeep(nest(5), 4)).toBe(true);
    expect(tooDeep(nest(4), 4)).toBe(false);
  });
});
