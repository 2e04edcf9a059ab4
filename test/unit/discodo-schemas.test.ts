import { TypeCompiler } from '@sinclair/typebox/compiler';
import { LosslessNumber } from 'lossless-json';
import { describe, expect, it } from 'vitest';
import { EnvelopeSchema, IntegerIdSchema, Payloads, SnowflakeSchema } from '../../src/protocols/discodo/messages.js';

describe('discodo schemas', () => {
  it('ids are checked by compiled custom kinds that understand lossless numbers', () => {
    const snowflake = TypeCompiler.Compile(SnowflakeSchema);
    const integerId = TypeCompiler.Compile(IntegerIdSchema);
    expect(snowflake.Check(new LosslessNumber('123456789012345678901'))).toBe(true);
    expect(snowflake.Check('abc')).toBe(true);
    expect(integerId.Check('abc')).toBe(false);
    expect(integerId.Check('1234-0')).toBe(false);
    expect(integerId.Check('1234')).toBe(true);
    for (const bad of ['', 'x'.repeat(65), new LosslessNumber('-1'), new LosslessNumber('1.5'), 1, null]) {
      expect(snowflake.Check(bad), String(bad)).toBe(false);
    }
  });

  it('the schemas are JSON schemas (shown as such when serialized)', () => {
    expect(JSON.parse(JSON.stringify(EnvelopeSchema))).toMatchObject({ type: 'object', required: ['op'] });
    expect(JSON.parse(JSON.stringify(Payloads.IDENTIFY))).toMatchObject({
      required: ['user_id'],
      properties: { user_id: { anyOf: [{ type: 'string' }, { type: 'integer', minimum: 0 }] } },
    });
  });
});
