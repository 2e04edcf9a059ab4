import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { RawPeer } from '../support/server.js';
import { control, startSharding, sync, type ShardingServer } from '../support/harness/sharding.js';

/** Log lines a CONTROL can cause at will are rate-limited per socket. */

let srv: ShardingServer | undefined;
const peers: RawPeer[] = [];

afterEach(async () => {
  for (const p of peers.splice(0)) p.close();
  await srv?.stop();
  srv = undefined;
});

function capture(): { logger: pino.Logger; lines: () => Array<Record<string, unknown>> } {
  const out: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (s: string) => void out.push(s) });
  return { logger, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const errorLines = (lines: Array<Record<string, unknown>>): Array<Record<string, unknown>> =>
  lines.filter((l) => l.msg === 'sharding: CONTROL reported an ERROR');

describe('sharding: per-peer log limit', () => {
  it('writes a burst of ERROR warn lines per CONTROL, then one a second with the count held back', async () => {
    const log = capture();
    srv = await startSharding({ shardCount: 2 }, { logger: log.logger });
    const a = await control(srv, 'alpha');
    const b = await control(srv, 'beta');
    peers.push(a.peer, b.peer);
    for (let i = 0; i < 500; i++) a.peer.send({ o: 7, d: { code: 1, message: `boom ${i}` } });
    await sync(a.peer);
    expect(errorLines(log.lines())).toHaveLength(5);
    // A second CONTROL is not silenced by the first.
    b.peer.send({ o: 7, d: { code: 2, message: 'mine' } });
    await sync(b.peer);
    expect(errorLines(log.lines()).at(-1)).toMatchObject({ control: 'beta', code: 2 });
    srv.clock.advance(1000);
    a.peer.send({ o: 7, d: { code: 1, message: 'later' } });
    await sync(a.peer);
    const last = errorLines(log.lines()).at(-1);
    expect(last).toMatchObject({ control: 'alpha', message: 'later', suppressed: 495 });
    expect(errorLines(log.lines())).toHaveLength(7);
  });
});
