import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, BUS_TOKEN, RawPeer, startTestServer, until, type TestServer } from '../support/server.js';
import { roundTrip } from '../support/harness/bus.js';
import { control, KEY, startSharding, sync, type ShardingServer } from '../support/harness/sharding.js';

/**
 * The dashboard's server side: the page at `/`, the peer list, and the live feed
 * (`GET /api/v1/events`), over real HTTP against a real server.
 */

let srv: TestServer | ShardingServer | undefined;
const peers: RawPeer[] = [];
const streams: AbortController[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.abort();
  for (const p of peers.splice(0)) p.close();
  await srv?.stop();
  srv = undefined;
});

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

interface SseEvent {
  event: string;
  data: unknown;
}

/** An open event stream whose events are read one by one. */
async function openEvents(base: string, query = ''): Promise<{ status: number; next: () => Promise<SseEvent>; res: Response }> {
  const ctrl = new AbortController();
  streams.push(ctrl);
  const res = await fetch(`${base}/api/v1/events${query}`, { headers: auth, signal: ctrl.signal });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  const next = async (): Promise<SseEvent> => {
    for (;;) {
      const i = buf.indexOf('\n\n');
      if (i >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (block.startsWith(':')) continue;
        const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
        const data = /^data: (.*)$/m.exec(block)?.[1];
        return { event, data: data === undefined ? null : JSON.parse(data) };
      }
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended');
      buf += value;
    }
  };
  return { status: res.status, next, res };
}

async function busPeer(base: string, name: string): Promise<RawPeer> {
  const p = await RawPeer.open(`${base}/bus`);
  peers.push(p);
  p.send({ op: 1, data: { token: BUS_TOKEN, name, group: 'g' } });
  await p.next();
  return p;
}

describe('dashboard: the page at /', () => {
  it('serves the built page to a browser, with a strict CSP, and the JSON index to anything else', async () => {
    srv = await startTestServer();
    const page = await fetch(`${srv.httpBase}/`, { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(page.headers.get('set-cookie')).toBeNull();
    const html = await page.text();
    expect(html).toContain('/dashboard/app.js');
    const js = await fetch(`${srv.httpBase}/dashboard/app.js`);
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toContain('javascript');
    expect((await js.text()).length).toBeGreaterThan(1000);
    const index = await fetch(`${srv.httpBase}/`);
    expect(await index.json()).toMatchObject({ name: 'muster', dashboard: '/', admin: '/api/v1' });
  });
});

describe('dashboard: GET /api/v1/peers', () => {
  it('needs the admin token, validates ?dialect, and lists peers with identity and address', async () => {
    srv = await startTestServer();
    expect((await fetch(`${srv.httpBase}/api/v1/peers`)).status).toBe(401);
    const bad = await fetch(`${srv.httpBase}/api/v1/peers?dialect=nope`, { headers: auth });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: 'BAD_REQUEST' });
    await busPeer(srv.wsBase, 'svc-a');
    const res = await fetch(`${srv.httpBase}/api/v1/peers?dialect=bus`, { headers: auth });
    const body = (await res.json()) as { counts: Record<string, number>; peers: Array<Record<string, unknown>> };
    expect(body.counts.bus).toBe(1);
    expect(body.peers).toHaveLength(1);
    expect(body.peers[0]).toMatchObject({ dialect: 'bus', identity: 'svc-a', remoteAddress: '127.0.0.1', latencyMs: null, instance: srv.muster.instanceId });
    expect((body as unknown as { instances: unknown }).instances).toEqual([{ id: srv.muster.instanceId, answered: true }]);
    expect(typeof body.peers[0]!.connectedAt).toBe('string');
  });

  it("measures a CONTROL's round trip with a ping beside each HEARTBEAT's ACK", async () => {
    const s = await startSharding({ shardCount: 4 });
    srv = s;
    const { peer } = await control(s, 'alpha');
    peers.push(peer);
    const latency = async (): Promise<unknown> => {
      const body = (await (await fetch(`${s.httpBase}/api/v1/peers?dialect=sharding`, { headers: auth })).json()) as { peers: Array<{ identity: string; latencyMs: unknown }> };
      return body.peers.find((p) => p.identity === 'alpha')?.latencyMs;
    };
    expect(await latency()).toBeNull();
    const pinged = new Promise<void>((resolve) => peer.ws.once('ping', () => resolve()));
    await sync(peer);
    await pinged;
    // The pong went out with the ping's handling; a second round trip orders it before the read.
    await sync(peer);
    expect(await latency()).toBe(0); // a manual clock: the round trip takes no time on it
  });

  it('times the round trip from the ping to its pong on the injected clock', async () => {
    const s = await startSharding({ shardCount: 4 });
    srv = s;
    const peer = await RawPeer.open(s.wsUrl, { headers: { authorization: KEY }, autoPong: false });
    peers.push(peer);
    await peer.next(); // INITIALISE
    peer.send({ o: 10, d: { name: 'slowpoke' } });
    await peer.next(); // IDENTIFIED
    const pinged = new Promise<void>((resolve) => peer.ws.once('ping', () => resolve()));
    peer.send({ o: 9, d: { seq: 1 } });
    await pinged;
    s.clock.advance(25);
    peer.ws.pong();
    await sync(peer);
    const body = (await (await fetch(`${s.httpBase}/api/v1/peers?dialect=sharding`, { headers: auth })).json()) as { peers: Array<{ identity: string; latencyMs: unknown }> };
    expect(body.peers.find((p) => p.identity === 'slowpoke')?.latencyMs).toBe(25);
  });
});

describe('dashboard: GET /api/v1/events', () => {
  it('refuses a missing token, an unknown topic and a bad interval', async () => {
    srv = await startTestServer();
    expect((await fetch(`${srv.httpBase}/api/v1/events`)).status).toBe(401);
    const wrong = await fetch(`${srv.httpBase}/api/v1/events`, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    const topic = await fetch(`${srv.httpBase}/api/v1/events?topics=peers,secrets`, { headers: auth });
    expect(topic.status).toBe(400);
    expect(((await topic.json()) as { message: string }).message).toContain('"secrets"');
    for (const interval of ['10', '99999', 'abc']) {
      const r = await fetch(`${srv.httpBase}/api/v1/events?interval=${interval}`, { headers: auth });
      expect(r.status, interval).toBe(400);
    }
  });

  it('sends hello, then each topic once, then only what changed, at most once per interval', async () => {
    const t = await startTestServer();
    srv = t;
    const ev = await openEvents(t.httpBase, '?topics=peers,bus.services&interval=1000');
    expect(ev.status).toBe(200);
    expect(ev.res.headers.get('content-type')).toContain('text/event-stream');
    expect(await ev.next()).toEqual({ event: 'hello', data: { topics: ['peers', 'bus.services'], interval: 1000 } });
    const first = [await ev.next(), await ev.next()];
    expect(first.map((e) => (e.data as { topic: string }).topic).sort()).toEqual(['bus.services', 'peers']);
    expect(first[0]!.data).toMatchObject({ status: 200 });
    expect((first.find((e) => (e.data as { topic: string }).topic === 'peers')!.data as { body: unknown }).body).toEqual({ counts: { bus: 0 }, peers: [], instances: [{ id: t.muster.instanceId, answered: true }] });

    const p = await busPeer(t.wsBase, 'svc-b');
    await roundTrip(p);
    // Not due yet: the next check is one interval after the first.
    t.clock.advance(500);
    t.clock.advance(500);
    const a = await ev.next();
    const b = await ev.next();
    const byTopic = Object.fromEntries([a, b].map((e) => [(e.data as { topic: string }).topic, (e.data as { body: unknown }).body]));
    expect((byTopic.peers as { peers: Array<{ identity: string }> }).peers.map((x) => x.identity)).toEqual(['svc-b']);
    expect((byTopic['bus.services'] as Array<{ name: string }>).map((x) => x.name)).toEqual(['svc-b']);
  });

  it('documents the feed and its event schema, and the peer list, in the OpenAPI document', async () => {
    srv = await startTestServer();
    const doc = (await (await fetch(`${srv.httpBase}/api/v1/openapi.json`, { headers: auth })).json()) as { paths: Record<string, Record<string, Record<string, unknown>>> };
    const events = doc.paths['/api/v1/events']!.get!;
    expect(JSON.stringify(events.responses)).toContain('text/event-stream');
    expect(JSON.stringify(events.responses)).toContain('"snapshot"');
    expect(JSON.stringify(events.parameters)).toContain('topics');
    expect(JSON.stringify(doc.paths['/api/v1/peers']!.get!.parameters)).toContain('"dialect"');
  });

  it('releases a stream when its client goes away, and caps open streams at 32', async () => {
    const t = await startTestServer();
    srv = t;
    const baseline = t.muster.scheduler.size;
    const open = [];
    for (let i = 0; i < 32; i++) open.push(await openEvents(t.httpBase, '?topics=status'));
    for (const ev of open) expect((await ev.next()).event).toBe('hello');
    // One ticking timer serves every stream.
    expect(t.muster.scheduler.size).toBe(baseline + 1);
    const over = await fetch(`${t.httpBase}/api/v1/events`, { headers: auth });
    expect(over.status).toBe(503);
    for (const s of streams.splice(0)) s.abort();
    await until(() => t.muster.scheduler.size === baseline);
    const again = await openEvents(t.httpBase, '?topics=status');
    expect(again.status).toBe(200);
  });

  it('ends its streams at shutdown (they do not hold the listener open)', async () => {
    const t = await startTestServer();
    srv = t;
    const ev = await openEvents(t.httpBase, '?topics=status');
    await ev.next(); // hello
    await ev.next(); // status
    await t.muster.stop();
    await expect(ev.next()).rejects.toThrow();
  });

  it('ends a stream when the admin token changes', async () => {
    const t = await startTestServer();
    srv = t;
    const ev = await openEvents(t.httpBase, '?topics=status');
    await ev.next();
    await ev.next();
    t.muster.reloadSecrets({ ...t.muster.config, admin: { ...t.muster.config.admin, token: 'a-new-token' } });
    t.clock.advance(1000);
    await expect(ev.next()).rejects.toThrow();
    const again = await fetch(`${t.httpBase}/api/v1/events`, { headers: auth });
    expect(again.status).toBe(401);
  });
});
