/**
 * The bus dialect's harness (`/bus`): a server with the bus on (its token is
 * `BUS_TOKEN`), identified services, and the PING/PONG round trip. Wire-level.
 */
import { expect } from 'vitest';
import { BUS_TOKEN, startTestServer, type RawPeer, type TestServer } from '../server.js';
import { Harness, roundTripKeeping, withDialect, type Overrides } from './harness.js';

export { BUS_TOKEN };

export interface Identified {
  peer: RawPeer;
  id: string;
}

export class BusHarness extends Harness<TestServer, [extra?: Overrides, top?: Overrides]> {
  constructor() {
    super('/bus', (extra = {}, top = {}) => startTestServer(withDialect('bus', extra, top)));
  }

  /** Opens a peer and IDENTIFYs with the bus token (and `data`); returns the peer and its service id. */
  async identify(data: Record<string, unknown> = {}): Promise<Identified> {
    const peer = await this.open();
    peer.send({ op: 1, data: { token: BUS_TOKEN, ...data } });
    const f = await peer.next<{ op: number; data: { id: string; heartbeat_interval: number } }>();
    expect(f.op).toBe(1);
    return { peer, id: f.data.id };
  }
}

/** A bus PING/PONG round trip: proves every frame sent before it was processed. */
export function roundTrip(peer: RawPeer): Promise<void> {
  // Frames that arrived before the PONG stay queued, in order, for the test to read.
  return roundTripKeeping(peer, { op: 3 }, (raw) => raw === '{"op":4}');
}
