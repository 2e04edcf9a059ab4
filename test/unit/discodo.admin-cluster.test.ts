import type { IncomingMessage } from 'node:http';
import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { ManualClock } from '../../src/core/clock.js';
import { Connection } from '../../src/core/connection.js';
import type { HttpReply, HttpRequest } from '../../src/core/dialect.js';
import { Scheduler } from '../../src/core/scheduler.js';
import { DiscodoDialect } from '../../src/dialects/discodo/dialect.js';
import type { Store } from '../../src/store/types.js';
import { Hub, hubBroker } from '../support/gather-hub.js';

/**
 * The discodo admin views across instances: two discodo dialects whose brokers gather
 * over an in-memory hub (Broker.gather, no Redis), each holding one session. Missing
 * instances are named in the header every admin list uses, `muster-instances-missing`.
 */

class FakeWs {
  bufferedAmount = 0;
  readyState = 1;
  send(): void {}
  close(): void {}
  terminate(): void {}
  ping(): void {}
}

function instance(hub: Hub, id: string, peers: () => string[], userId: string): DiscodoDialect {
  const scheduler = new Scheduler(new ManualClock(1_000_000));
  const broker = hubBroker(hub, id, peers);
  const ctx = { scheduler, store: {} as Store, broker, logger: pino({ level: 'silent' }), registry: new Registry() };
  const d = new DiscodoDialect({ path: '/ws', password: 'pw', heartbeatInterval: 15_000, vcTimeout: 300_000, handshakeTimeout: 60_000, compat: 'seed' }, ctx, { secretEquals: (a, b) => a === b });
  const conn = new Connection(new FakeWs() as unknown as WebSocket, { id: `${id}-c1`, dialect: 'discodo', remoteAddress: '10.0.0.1', scheduler, maxBufferedBytes: 1 << 20 });
  const h = d.accept(conn, { headers: { authorization: 'pw' } } as unknown as IncomingMessage);
  h.onMessage(Buffer.from(`{"op":"IDENTIFY","d":{"user_id":${userId}}}`), false);
  return d;
}

function harness() {
  const hub = new Hub();
  let bUp = true;
  const a = instance(hub, 'a', () => (bUp ? ['b'] : []), '1');
  const b = instance(hub, 'b', () => ['a'], '2');
  const get = (d: DiscodoDialect, url: string, params: Record<string, string> = {}): Promise<HttpReply> => {
    const route = d.routes().find((r) => r.url === url);
    if (!route) throw new Error(url);
    return Promise.resolve(route.handler({ params, query: {}, body: undefined, ip: '127.0.0.1', headers: {} } satisfies HttpRequest));
  };
  return { hub, a, b, get, gone: () => (bUp = false) };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const keysOf = (r: HttpReply): unknown => (r.body as Array<{ key: string; instance: string }>).map((v) => [v.key, v.instance]);

describe('discodo admin views across instances (Broker.gather)', () => {
  it("gathers every instance's sessions, tagged with their instance", async () => {
    const h = harness();
    const r = await h.get(h.a, '/api/v1/discodo/sessions');
    expect(keysOf(r)).toEqual([
      ['1', 'a'],
      ['2', 'b'],
    ]);
    expect((r.body as Array<Record<string, unknown>>)[1]).toMatchObject({ key: '2', state: 'connected', connectionId: 'b-c1' });
    expect(r.headers).toEqual({ 'muster-instances': 'a, b' });
  });

  it('answers after the timeout with what it has, naming the instances that did not answer', async () => {
    const h = harness();
    h.hub.deaf.add('b');
    const list = h.get(h.a, '/api/v1/discodo/sessions');
    const one = h.get(h.a, '/api/v1/discodo/sessions/:key', { key: '2' });
    await tick();
    h.hub.fire();
    const r = await list;
    expect(keysOf(r)).toEqual([['1', 'a']]);
    expect(r.headers).toEqual({ 'muster-instances': 'a', 'muster-instances-missing': 'b' });
    expect(await one).toMatchObject({ status: 404, headers: { 'muster-instances-missing': 'b' } });
  });

  it('does not wait for an instance reported gone; with no other instance it answers at once', async () => {
    const h = harness();
    h.hub.deaf.add('b');
    h.gone();
    const r = await h.get(h.a, '/api/v1/discodo/sessions');
    expect(keysOf(r)).toEqual([['1', 'a']]);
    expect(r.headers).toEqual({ 'muster-instances': 'a' });
  });

  it("answers another instance's ask: one session by key, wherever it is", async () => {
    const h = harness();
    expect(await h.get(h.a, '/api/v1/discodo/sessions/:key', { key: '2' })).toMatchObject({ body: { key: '2', instance: 'b' } });
    expect(await h.get(h.b, '/api/v1/discodo/sessions/:key', { key: '1' })).toMatchObject({ body: { key: '1', instance: 'a' } });
    const none = await h.get(h.b, '/api/v1/discodo/sessions/:key', { key: '3' });
    expect(none).toMatchObject({ status: 404 });
    expect(none.headers).toEqual({ 'muster-instances': 'b, a' });
  });
});
