import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BusClient, BusRequestError, type BusDelivery } from '../../src/client/index.js';
import type { BusDialect } from '../../src/dialects/bus/dialect.js';
import { BusHarness } from '../support/harness/bus.js';
import { ADMIN_TOKEN, BUS_TOKEN, serverRoundTrip, until } from '../support/server.js';

const h = new BusHarness();
const clients: BusClient[] = [];

function client(opts: Partial<ConstructorParameters<typeof BusClient>[0]> = {}): BusClient {
  const c = new BusClient({ url: h.url, token: BUS_TOKEN, reconnect: { minMs: 5, maxMs: 20 }, ...opts });
  clients.push(c);
  return c;
}

function nextEvent(c: BusClient): Promise<BusDelivery> {
  return new Promise((resolve) => c.once('event', resolve));
}

beforeEach(async () => {
  await h.start();
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await h.teardown((srv) => {
    expect(srv.muster.dialect<BusDialect>('bus')?.summary()).toEqual({ services: 0, connections: 0, groups: 0, pendingRequests: 0 });
  });
});

describe('BusClient', () => {
  it('identifies, with the token in IDENTIFY or in the header', async () => {
    const a = client();
    const b = client({ tokenInHeader: true });
    await a.connect();
    await b.connect();
    expect(a.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(b.connected).toBe(true);
  });

  it('sends GLOBAL, GROUP and DIRECT events', async () => {
    const a = client();
    const b = client({ groups: ['shards'], name: 'b' });
    await a.connect();
    await b.connect();
    let got = nextEvent(b);
    a.emitGlobal('G', { x: 1 });
    expect(await got).toMatchObject({ event: 'G', data: { x: 1 }, source: a.id });
    got = nextEvent(b);
    a.emitGroup('shards', 'GR');
    expect((await got).event).toBe('GR');
    got = nextEvent(b);
    a.emitDirect('b', 'D');
    expect((await got).event).toBe('D');
  });

  it('request() resolves with the reply, and rejects NO_ROUTE and TIMEOUT as typed errors', async () => {
    const a = client();
    const b = client({ name: 'echo' });
    await a.connect();
    await b.connect();
    b.on('event', (m: BusDelivery) => {
      if (m.event === 'ECHO') b.reply(m, { echoed: m.data });
    });
    await expect(a.request('echo', 'ECHO', 42)).resolves.toEqual({ echoed: 42 });
    await expect(a.request('ghost', 'ECHO')).rejects.toMatchObject({ name: 'BusRequestError', code: 'NO_ROUTE' });
    const pending = a.request(b.id as string, 'IGNORED');
    await until(() => h.srv.muster.dialect<BusDialect>('bus')?.summary().pendingRequests === 1);
    h.srv.clock.advance(10_000);
    const err = await pending.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BusRequestError);
    expect((err as BusRequestError).code).toBe('TIMEOUT');
  });

  it('collect() gathers group replies and reports the missing ones', async () => {
    const a = client();
    const members = [client({ group: 'g' }), client({ group: 'g' }), client({ group: 'g' })];
    await a.connect();
    for (const m of members) await m.connect();
    members[0]?.on('event', (m: BusDelivery) => members[0]?.reply(m, 'zero'));
    members[1]?.on('event', (m: BusDelivery) => members[1]?.reply(m, 'one'));
    const result = a.collect({ target: 'GROUP', identifier: 'g' }, 'STATS', null, { expect: 'all' });
    await until(() => h.srv.muster.dialect<BusDialect>('bus')?.summary().pendingRequests === 1);
    // Each member answers the server's ping after the event it got, so its reply (if any) has been handled.
    await serverRoundTrip(h.srv.muster);
    h.srv.clock.advance(10_000);
    const r = await result;
    expect(r.received).toBe(2);
    expect(r.expected).toBe(3);
    expect(r.missing).toEqual([members[2]?.id]);
    expect(r.replies.map((x) => x.data).sort()).toEqual(['one', 'zero']);
  });

  it('answers server PINGs so it is never timed out', async () => {
    const a = client();
    await a.connect();
    for (let i = 0; i < 4; i++) {
      h.srv.clock.advance(30_000);
      await serverRoundTrip(h.srv.muster);
    }
    expect(a.connected).toBe(true);
  });

  it('reconnects with backoff after being kicked, and rejects what was pending', async () => {
    const a = client({ name: 'phoenix' });
    const b = client();
    await a.connect();
    await b.connect();
    const firstId = a.id;
    const pending = b.request('phoenix', 'NEVER_ANSWERED');
    const failed = expect(pending).rejects.toMatchObject({ code: 'NO_ROUTE' });
    await until(() => h.srv.muster.dialect<BusDialect>('bus')?.summary().pendingRequests === 1);
    const reconnected = new Promise<void>((resolve) => a.once('identified', () => resolve()));
    await h.srv.muster.http.inject({ method: 'DELETE', url: `/api/v1/connections/${firstId}`, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    await reconnected;
    expect(a.id).not.toBe(firstId);
    // The recipient left, so the request is answered at once, with no clock movement.
    await failed;
  });

  it('does not reconnect after a refused identity', async () => {
    const a = client({ token: 'wrong' });
    // A reconnect is scheduled (and announced) in the close handler itself, before connect() rejects.
    let reconnecting = false;
    a.on('reconnecting', () => (reconnecting = true));
    await expect(a.connect()).rejects.toThrow(/4004/);
    expect(reconnecting).toBe(false);
  });

  it('rejects requests made while disconnected', async () => {
    const a = client({ reconnect: false });
    await expect(a.request('x', 'E')).rejects.toMatchObject({ code: 'DISCONNECTED' });
  });
});
