import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/load.js';
import {
  CloseCode,
  Errors,
  MusterError,
  coreCloseCodes,
  httpError,
  isMusterError,
  isSendableCloseCode,
  type ErrorName,
} from '../../src/common/errors.js';

const names = Object.keys(Errors) as ErrorName[];

/** Every TypeScript source under src/ but the catalogue itself, as text. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !p.endsWith(join('common', 'errors.ts')) ? [readFileSync(p, 'utf8')] : [];
  });
}

describe('Errors catalogue', () => {
  it('has at least the errors the core relies on', () => {
    for (const n of ['STORE_UNAVAILABLE', 'SHUTTING_DOWN', 'INTERNAL'] as const) {
      expect(names).toContain(n);
    }
  });

  it('has no dead entry: every one is used by src/ (by name through MusterError, httpError or Errors.X, or by its code)', () => {
    const src = sources(resolve(import.meta.dirname, '../../src')).join('\n');
    const unused = names.filter(
      (n) => !new RegExp(`(MusterError\\(|httpError\\(|isMusterError\\([^,]*, )'${n}'|Errors\\.${n}\\b|'${Errors[n].code}'`).test(src),
    );
    expect(unused).toEqual([]);
  });

  it('gives ConfigError (config/ imports nothing from core) the CONFIG_INVALID code', () => {
    expect(new ConfigError('port', -1, 'a port').code).toBe(Errors.CONFIG_INVALID.code);
  });

  it('answers HTTP errors with the status of the entry and {error: name, message}', () => {
    expect(httpError('NOT_FOUND', 'no such thing')).toEqual({ status: 404, body: { error: 'NOT_FOUND', message: 'no such thing' } });
    expect(httpError('SHUTTING_DOWN', 'bye').status).toBe(503);
    for (const n of names) {
      const status = (Errors[n] as { status?: number }).status;
      if (status !== undefined) expect(status >= 400 && status <= 599, n).toBe(true);
    }
  });

  it('gives every entry a unique code starting with MUSTER_', () => {
    const codes = names.map((n) => Errors[n].code);
    expect(new Set(codes).size).toBe(codes.length);
    for (const n of names) {
      const spec = Errors[n];
      expect(spec.code).toMatch(/^MUSTER_[A-Z0-9_]+$/);
      expect(spec.code).toBe(`MUSTER_${n}`);
      expect(spec.message.length).toBeGreaterThan(0);
      expect(typeof spec.retryable).toBe('boolean');
    }
  });
});

describe('MusterError', () => {
  it.each(names)('%s carries name, code, retryable and message', (n) => {
    const e = new MusterError(n);
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(MusterError);
    expect(e.name).toBe(n);
    expect(e.code).toBe(Errors[n].code);
    expect(e.retryable).toBe(Errors[n].retryable);
    expect(e.message).toBe(Errors[n].message);
    expect(e.cause).toBeUndefined();
    expect(typeof e.stack).toBe('string');
  });

  it('appends the detail to the message', () => {
    const e = new MusterError('NOT_FOUND', 'slave 42');
    expect(e.message).toBe(`${Errors.NOT_FOUND.message}: slave 42`);
    expect(String(e)).toBe(`NOT_FOUND: ${Errors.NOT_FOUND.message}: slave 42`);
  });

  it('ignores an empty detail', () => {
    expect(new MusterError('NOT_FOUND', '').message).toBe(Errors.NOT_FOUND.message);
  });

  it('passes the cause through', () => {
    const cause = new Error('disk on fire');
    const e = new MusterError('STORE_UNAVAILABLE', 'sqlite', { cause });
    expect(e.cause).toBe(cause);
    expect(e.retryable).toBe(true);
    const nonError = { reason: 'x' };
    expect(new MusterError('CONFIG_INVALID', undefined, { cause: nonError }).cause).toBe(nonError);
  });

  it('has the expected retryable flags for key errors', () => {
    expect(new MusterError('STORE_UNAVAILABLE').retryable).toBe(true);
    expect(new MusterError('SHUTTING_DOWN').retryable).toBe(true);
    expect(new MusterError('BAD_REQUEST').retryable).toBe(false);
    expect(new MusterError('UNAUTHORIZED').retryable).toBe(false);
    expect(new MusterError('CONFIG_INVALID').retryable).toBe(false);
  });
});

describe('isMusterError', () => {
  it('recognises MusterErrors, optionally by name', () => {
    const e = new MusterError('STORE_UNAVAILABLE');
    expect(isMusterError(e)).toBe(true);
    expect(isMusterError(e, 'STORE_UNAVAILABLE')).toBe(true);
    expect(isMusterError(e, 'NOT_FOUND')).toBe(false);
  });

  it('rejects everything else', () => {
    expect(isMusterError(new Error('x'))).toBe(false);
    const lookalike = Object.assign(new Error('x'), { name: 'STORE_UNAVAILABLE', code: 'MUSTER_STORE_UNAVAILABLE', retryable: true });
    expect(isMusterError(lookalike)).toBe(false);
    expect(isMusterError(lookalike, 'STORE_UNAVAILABLE')).toBe(false);
    expect(isMusterError(undefined)).toBe(false);
    expect(isMusterError(null)).toBe(false);
    expect(isMusterError('MUSTER_STORE_UNAVAILABLE')).toBe(false);
    expect(isMusterError({ code: 'MUSTER_STORE_UNAVAILABLE' })).toBe(false);
  });
});

describe('isSendableCloseCode', () => {
  it.each([
    [999, false],
    [1000, true],
    [1001, true],
    [1002, true],
    [1003, true],
    [1004, false],
    [1005, false],
    [1006, false],
    [1007, true],
    [1008, true],
    [1009, true],
    [1010, true],
    [1011, true],
    [1012, true],
    [1013, true],
    [1014, true],
    [1015, false],
    [1016, false],
    [2000, false],
    [2999, false],
    [3000, true],
    [4000, true],
    [4999, true],
    [5000, false],
    [0, false],
    [-1000, false],
    [65535, false],
  ])('%i -> %s', (code, ok) => {
    expect(isSendableCloseCode(code)).toBe(ok);
  });

  it('accepts every code in coreCloseCodes', () => {
    const codes = Object.keys(coreCloseCodes).map(Number);
    expect(codes.length).toBeGreaterThan(0);
    for (const c of codes) {
      expect(Number.isInteger(c)).toBe(true);
      expect(isSendableCloseCode(c)).toBe(true);
      const spec = coreCloseCodes[c];
      expect(spec?.name).toMatch(/^[A-Z_]+$/);
      expect(spec?.description.length).toBeGreaterThan(0);
    }
  });

  it('accepts every code in CloseCode', () => {
    for (const c of Object.values(CloseCode)) expect(isSendableCloseCode(c)).toBe(true);
  });

  it('names coreCloseCodes consistently with CloseCode', () => {
    const byValue = new Map<number, string>(Object.entries(CloseCode).map(([k, v]) => [v, k]));
    for (const [code, spec] of Object.entries(coreCloseCodes)) {
      const name = byValue.get(Number(code));
      if (name !== undefined) expect(spec.name).toBe(name);
    }
  });
});
