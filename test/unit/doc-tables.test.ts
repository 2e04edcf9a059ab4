import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { docPath, regenerate, renderCloseCodeTable, TABLES } from '../../scripts/docs-tables.js';

describe('docs/dialects tables are generated from the protocol modules', () => {
  for (const dialect of Object.keys(TABLES)) {
    it(`docs/dialects/${dialect}.md carries exactly what npm run docs:tables writes`, () => {
      const doc = readFileSync(docPath(dialect), 'utf8');
      expect(regenerate(dialect, doc)).toBe(doc);
    });
  }

  it('notices a drifted table, a missing block and an unknown block', () => {
    const doc = readFileSync(docPath('bus'), 'utf8');
    const drifted = doc.replace('| 4008 | SLOW_CONSUMER |', '| 4008 | SLOW |');
    expect(drifted).not.toBe(doc);
    expect(regenerate('bus', drifted)).toBe(doc);
    expect(() => regenerate('bus', doc.replace('<!-- generated:opcodes -->', ''))).toThrow(/missing <!-- generated:opcodes -->/);
    expect(() => regenerate('bus', `${doc}\n<!-- generated:nope -->\n<!-- /generated -->\n`)).toThrow(/no renderer/);
  });

  it('renders one row per code, ascending, with retry? from `retry` or `retryable`', () => {
    expect(
      renderCloseCodeTable({
        4001: { name: 'B', description: 'b', retryable: false },
        1000: { name: 'A', description: 'a', retryable: true },
        4002: { name: 'C', description: 'c', retryable: true, retry: 'resume' },
      }),
    ).toBe(['| code | name | when | retry? |', '|---|---|---|---|', '| 1000 | A | a | yes |', '| 4001 | B | b | no |', '| 4002 | C | c | resume |'].join('\n'));
  });
});
