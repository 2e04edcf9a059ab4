import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { LogLimiter } from '../../src/core/ratelimit.js';
import { REDACTED, TRACE_FRAME_CHARS, redactFrame } from '../../src/core/peer-log.js';

describe('redactFrame', () => {
  it('replaces the values of secret-looking keys, at any depth, and keeps 64-bit ids', () => {
    const out = redactFrame('{"op":1,"d":{"token":"abc","nested":[{"rcon_password":"p","session_token":"s"}],"id":1234567890123456789}}', []);
    expect(out).toBe(`{"op":1,"d":{"token":"${REDACTED}","nested":[{"rcon_password":"${REDACTED}","session_token":"${REDACTED}"}],"id":1234567890123456789}}`);
  });

  it('redacts a value named by its sibling (set_instance_config_field)', () => {
    expect(redactFrame('{"field":"factorio.rcon_password","value":"hunter2"}', [])).toBe(`{"field":"factorio.rcon_password","value":"${REDACTED}"}`);
  });

  it('scrubs configured secrets wherever they appear, JSON or not', () => {
    expect(redactFrame('{"name":"my-secret-1"}', ['my-secret-1'])).toBe(`{"name":"${REDACTED}"}`);
    expect(redactFrame('not json my-secret-1x', ['my-secret-1'])).toBe(`not json ${REDACTED}x`);
    expect(redactFrame('{"token": "abc", broken', [])).toBe(`{"token": "${REDACTED}", broken`);
  });

  it('cuts long frames, and never leaves the start of a secret at the cut', () => {
    const secret = 'SECRETVALUE123';
    const text = `${'x'.repeat(TRACE_FRAME_CHARS - 6)}${secret}`;
    const out = redactFrame(text, [secret]);
    expect(out.length).toBeLessThanOrEqual(TRACE_FRAME_CHARS + 1);
    expect(out).not.toContain('SECRET');
  });
});

describe('LogLimiter (the auth-failure budget)', () => {
  it('lets a burst through per key, then one per refill, and counts what it held back', () => {
    const clock = new ManualClock();
    const l = new LogLimiter(() => clock.now(), { perSecond: 1, burst: 2 });
    expect(l.allow('a')).toBe(0);
    expect(l.allow('a')).toBe(0);
    expect(l.allow('a')).toBeUndefined();
    expect(l.allow('a')).toBeUndefined();
    expect(l.allow('b')).toBe(0);
    clock.advance(1000);
    expect(l.allow('a')).toBe(2);
    expect(l.allow('a')).toBeUndefined();
  });

  it('stays bounded past maxKeys even when every key is active', () => {
    const clock = new ManualClock();
    const l = new LogLimiter(() => clock.now(), { perSecond: 1, burst: 1 }, 2);
    l.allow('a');
    l.allow('b');
    l.allow('c');
    expect(l.size).toBe(2);
    expect(l.allow('a')).toBe(0);
  });
});
