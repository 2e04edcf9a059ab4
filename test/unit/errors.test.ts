import { describe, expect, it } from 'vitest';
import {
  CloseCode,
  Errors,
  MusterError,
  coreCloseCodes,
  isMusterError,
  isSendableCloseCode,
  type ErrorName,
} from '../../src/core/errors.js';

const names = Object.keys(Errors) as ErrorName[];

describe('Errors catalogue', () => {
  it('has at least the errors the core relies on', () => {
    for (const n of ['REQUEST_TIMEOUT', 'SESSION_LOST', 'DUPLICATE_REQUEST', 'SLOW_CONSUMER', 'CONNECTION_CLOSED'] as const) {
      expect(names).toContain(n);
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
    const e = new MusterError('REQUEST_TIMEOUT', 'req-42');
    expect(e.message).toBe(`${Errors.REQUEST_TIMEOUT.message}: req-42`);
    expect(String(e)).toBe(`REQUEST_TIMEOUT: ${Errors.REQUEST_TIMEOUT.message}: req-42`);
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
    expect(new MusterError('REQUEST_TIMEOUT').retryable).toBe(true);
    expect(new MusterError('SESSION_LOST').retryable).toBe(true);
    expect(new MusterError('DUPLICATE_REQUEST').retryable).toBe(false);
    expect(new MusterError('UNAUTHORIZED').retryable).toBe(false);
    expect(new MusterError('CONFIG_INVALID').retryable).toBe(false);
  });
});

describe('isMusterError', () => {
  it('recognises MusterErrors, optionally by name', () => {
    const e = new MusterError('SESSION_LOST');
    expect(isMusterError(e)).toBe(true);
    expect(isMusterError(e, 'SESSION_LOST')).toBe(true);
    expect(isMusterError(e, 'REQUEST_TIMEOUT')).toBe(false);
  });

  it('rejects everything else', () => {
    expect(isMusterError(new Error('x'))).toBe(false);
    const lookalike = Object.assign(new Error('x'), { name: 'SESSION_LOST', code: 'MUSTER_SESSION_LOST', retryable: true });
    expect(isMusterError(lookalike)).toBe(false);
    expect(isMusterError(lookalike, 'SESSION_LOST')).toBe(false);
    expect(isMusterError(undefined)).toBe(false);
    expect(isMusterError(null)).toBe(false);
    expect(isMusterError('MUSTER_SESSION_LOST')).toBe(false);
    expect(isMusterError({ code: 'MUSTER_SESSION_LOST' })).toBe(false);
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
