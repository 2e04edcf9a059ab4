import { describe, expect, it } from 'vitest';
import { renderStatus } from '../../src/cli/status.js';

describe('muster status across instances', () => {
  const base = { version: '1.2.0', uptimeSeconds: 65, store: 'redis', instanceId: 'a', dialects: {} };

  it('prints the totals, then one line per instance (this one marked), and a silent one', () => {
    const out = renderStatus({
      ...base,
      connections: { bus: 3, gamelist: 1 },
      instances: [
        { id: 'a', answered: true, version: '1.2.0', uptimeSeconds: 65, connections: { bus: 1, gamelist: 0 } },
        { id: 'b', answered: true, version: '1.2.0', uptimeSeconds: 3700, connections: { bus: 2, gamelist: 1 } },
        { id: 'c', answered: false, error: 'no answer in time' },
      ],
    });
    expect(out).toContain('Connections: 4\n');
    expect(out).toContain('Instances: 2 of 3 answered (totals are partial)\n');
    expect(out).toMatch(/^ \*a +1 connections {2}up 1m5s {2}1\.2\.0 {2}bus=1$/m);
    expect(out).toMatch(/^ {2}b +3 connections {2}up 1h1m {2}1\.2\.0 {2}bus=2 gamelist=1$/m);
    expect(out).toMatch(/^ {2}c +no answer: no answer in time$/m);
  });

  it('says nothing of instances when one runs alone', () => {
    const out = renderStatus({ ...base, connections: { bus: 0 }, instances: [{ id: 'a', answered: true, version: '1.2.0', uptimeSeconds: 65, connections: { bus: 0 } }] });
    expect(out).not.toContain('Instances');
  });
});
