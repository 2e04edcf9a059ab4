import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { ManualClock } from '../../src/core/clock.js';
import { BURST_CONNECTS_PER_SECOND } from '../../src/core/connect-burst.js';
import type { Muster } from '../../src/index.js';
import { RawPeer, startTestServer, until, type TestServer } from '../support/server.js';

/**
 * The transport tells when connections arrive in a burst (the server holds V8's young
 * generation meanwhile: src/young-gen.ts) and when it is over, in the log at debug.
 */

let srv: TestServer | undefined;
const peers: RawPeer[] = [];
afterEach(async () => {
  for (const p of peers.splice(0)) p.ws.terminate();
  await srv?.stop();
  srv = undefined;
});

interface Line {
  event?: string;
  on?: boolean;
  perSecond?: number;
}

async function start(): Promise<{ muster: Muster; clock: ManualClock; bursts: () => Line[]; url: string }> {
  const text: string[] = [];
  srv = await startTestServer({}, { logger: pino({ level: 'debug' }, { write: (s: string) => void text.push(s) }) });
  const bursts = () => text.map((t) => JSON.parse(t) as Line).filter((l) => l.event === 'transport.burst');
  return { muster: srv.muster, clock: srv.clock, bursts, url: `${srv.wsBase}/bus` };
}

async function connect(url: string, n: number): Promise<void> {
  peers.push(...(await Promise.all(Array.from({ length: n }, () => RawPeer.open(url)))));
}

describe('connection bursts', () => {
  it('logs the start of a burst at the hundredth connection in one second, and its end a quiet second later', async () => {
    const { muster, clock, bursts, url } = await start();
    await connect(url, BURST_CONNECTS_PER_SECOND - 1);
    await until(() => muster.transport.size === BURST_CONNECTS_PER_SECOND - 1);
    expect(bursts()).toEqual([]);
    await connect(url, 1);
    await until(() => bursts().length === 1);
    expect(bursts()[0]).toMatchObject({ on: true, perSecond: BURST_CONNECTS_PER_SECOND });
    // Another full second's worth keeps it on at the first check...
    await connect(url, BURST_CONNECTS_PER_SECOND);
    await until(() => muster.transport.size === 2 * BURST_CONNECTS_PER_SECOND);
    clock.advance(1000);
    expect(bursts()).toHaveLength(1);
    // ...and a second with fewer ends it.
    clock.advance(1000);
    expect(bursts()).toHaveLength(2);
    expect(bursts()[1]).toMatchObject({ on: false });
  });

  it('is not a burst when the same connections come slower than the threshold', async () => {
    const { muster, clock, bursts, url } = await start();
    for (let s = 0; s < 3; s++) {
      await connect(url, BURST_CONNECTS_PER_SECOND / 2);
      clock.advance(1000);
    }
    await until(() => muster.transport.size === (3 * BURST_CONNECTS_PER_SECOND) / 2);
    expect(bursts()).toEqual([]);
  });

  it('ends a burst that is on when the server stops', async () => {
    const { bursts, url } = await start();
    await connect(url, BURST_CONNECTS_PER_SECOND);
    await until(() => bursts().length === 1);
    await srv!.stop();
    srv = undefined;
    expect(bursts().map((l) => l.on)).toEqual([true, false]);
  });
});
