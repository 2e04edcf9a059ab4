import { afterEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, BUS_TOKEN, RawPeer, startTestServer, until, type TestServer } from '../support/server.js';

let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
});

const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

describe('HTTP: health, readiness, metrics', () => {
  it('answers /healthz and /readyz over real HTTP', async () => {
    srv = await startTestServer();
    const h = await fetch(`${srv.httpBase}/healthz`);
    expect(h.status).toBe(200);
    expect(await h.json()).toEqual({ status: 'ok' });
    const r = await fetch(`${srv.httpBase}/readyz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ status: 'ready', instanceId: srv.muster.instanceId });
  });

  it('answers /readyz with 503 when the store is unreachable', async () => {
    srv = await startTestServer();
    await srv.muster.store.close();
    const r = await srv.muster.http.inject({ url: '/readyz' });
    expect(r.statusCode).toBe(503);
    expect(r.json()).toMatchObject({ status: 'unavailable' });
  });

  it('exposes Prometheus metrics: connections, frames, closes, HTTP latency', async () => {
    srv = await startTestServer();
    const p = await RawPeer.open(`${srv.wsBase}/bus`);
    p.send({ op: 1, data: { token: BUS_TOKEN } });
    await p.next();
    p.send('garbage');
    await p.waitClose();
    await fetch(`${srv.httpBase}/healthz`);
    const res = await fetch(`${srv.httpBase}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toMatch(/muster_connections\{dialect="bus"\} 0/);
    expect(text).toMatch(/muster_frames_in_total\{dialect="bus"\} 2/);
    expect(text).toMatch(/muster_frames_out_total\{dialect="bus"\} 2/);
    expect(text).toMatch(/muster_closes_total\{dialect="bus",code="4002"\} 1/);
    expect(text).toMatch(/muster_http_request_duration_seconds_count\{method="GET",route="\/healthz",status="200"\} 1/);
    expect(text).toContain('muster_bus_services 0');
    expect(text).toContain(`muster_instance_info{instance_id="${srv.muster.instanceId}"} 1`);
  });

  it('includes event-loop lag when default metrics are on', async () => {
    srv = await startTestServer();
    // The test server turns them off; a default server has them.
    const { CoreMetrics } = await import('../../src/core/metrics.js');
    const m = new CoreMetrics();
    expect(await m.registry.metrics()).toContain('nodejs_eventloop_lag_seconds');
  });
});

describe('HTTP: admin API', () => {
  it('refuses every /api/v1 route without the bearer token (401)', async () => {
    // 19 failures from one address: above the default per-IP limit (see http-limits.test.ts).
    srv = await startTestServer({ admin: { failedAuthPerIpPerMinute: 100 } });
    for (const url of ['/api/v1/connections', '/api/v1/bus/services', '/api/v1/bus/groups', '/api/v1/openapi.json', '/api/v1/status', '/api/v1/nope']) {
      const none = await srv.muster.http.inject({ url });
      expect(none.statusCode, url).toBe(401);
      const wrong = await srv.muster.http.inject({ url, headers: { authorization: 'Bearer wrong' } });
      expect(wrong.statusCode, url).toBe(401);
      const raw = await srv.muster.http.inject({ url, headers: { authorization: ADMIN_TOKEN } });
      expect(raw.statusCode, url).toBe(401);
    }
    const del = await srv.muster.http.inject({ method: 'DELETE', url: '/api/v1/connections/x' });
    expect(del.statusCode).toBe(401);
  });

  it('lists connections with id, dialect, remote address, since and identity', async () => {
    srv = await startTestServer();
    const p = await RawPeer.open(`${srv.wsBase}/bus`);
    let res = await srv.muster.http.inject({ url: '/api/v1/connections', headers: auth });
    const [c] = res.json() as Array<Record<string, unknown>>;
    expect(c).toEqual({ id: expect.any(String), dialect: 'bus', remoteAddress: '127.0.0.1', connectedAt: expect.any(String), identity: null, instance: srv.muster.instanceId });
    expect(res.headers['muster-instances']).toBe(srv.muster.instanceId);
    expect(res.headers['muster-instances-missing']).toBeUndefined();
    p.send({ op: 1, data: { token: BUS_TOKEN, name: 'svc-a' } });
    await p.next();
    res = await srv.muster.http.inject({ url: '/api/v1/connections', headers: auth });
    expect((res.json() as Array<{ identity: string }>)[0]?.identity).toBe('svc-a');
    p.close();
    await until(() => srv?.muster.transport.size === 0);
  });

  it('kicks a connection, and 404s an unknown one', async () => {
    srv = await startTestServer();
    const p = await RawPeer.open(`${srv.wsBase}/bus`);
    const [c] = (await srv.muster.http.inject({ url: '/api/v1/connections', headers: auth })).json() as Array<{ id: string }>;
    const res = await srv.muster.http.inject({ method: 'DELETE', url: `/api/v1/connections/${c?.id}`, headers: auth });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ kicked: c?.id, instance: srv.muster.instanceId });
    expect((await p.waitClose()).code).toBe(1008);
    const missing = await srv.muster.http.inject({ method: 'DELETE', url: '/api/v1/connections/nope', headers: auth });
    expect(missing.statusCode).toBe(404);
  });

  it('serves an OpenAPI document listing the admin routes', async () => {
    srv = await startTestServer();
    const res = await srv.muster.http.inject({ url: '/api/v1/openapi.json', headers: auth });
    const doc = res.json() as { openapi: string; paths: Record<string, Record<string, unknown>> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/api/v1/connections', '/api/v1/connections/{id}', '/api/v1/bus/services', '/api/v1/bus/groups', '/api/v1/status']),
    );
    expect(doc.paths['/api/v1/connections/{id}']).toHaveProperty('delete');
    const kick = doc.paths['/api/v1/connections/{id}']?.delete as { parameters: Array<{ name: string }>; responses: Record<string, unknown> };
    expect(kick.parameters.map((p) => p.name)).toEqual(['id', 'reason']);
    expect(Object.keys(kick.responses)).toEqual(expect.arrayContaining(['200', '404', '503']));
    const status = doc.paths['/api/v1/status']?.get as { responses: { '200': { content: { 'application/json': { schema: { properties: Record<string, unknown> } } } } } };
    expect(Object.keys(status.responses['200'].content['application/json'].schema.properties)).toEqual(
      expect.arrayContaining(['version', 'connections', 'dialects', 'instances']),
    );
    // Every list gathered from every instance documents the headers that say which answered.
    type Ok = { headers?: Record<string, unknown>; content: { 'application/json': { schema: { items: { properties: Record<string, unknown> } } } } };
    const ok = (path: string): Ok => (doc.paths[path]?.get as { responses: { '200': Ok } }).responses['200'];
    for (const path of ['/api/v1/connections', '/api/v1/bus/services']) expect(Object.keys(ok(path).headers ?? {})).toEqual(['muster-instances', 'muster-instances-missing']);
    expect(ok('/api/v1/bus/groups').headers).toBeUndefined();
    for (const path of ['/api/v1/bus/services', '/api/v1/bus/groups']) expect(ok(path).content['application/json'].schema.items.properties).toHaveProperty('instance');
  });

  it('summarizes the server for `muster status`', async () => {
    srv = await startTestServer();
    const res = await srv.muster.http.inject({ url: '/api/v1/status', headers: auth });
    expect(res.json()).toMatchObject({
      version: expect.any(String),
      store: 'memory',
      connections: { bus: 0 },
      dialects: { bus: { path: '/bus', services: 0 } },
      instances: [{ id: srv.muster.instanceId, answered: true, version: expect.any(String), uptimeSeconds: expect.any(Number), connections: { bus: 0 } }],
    });
  });
});

describe('transport: routing and limits', () => {
  async function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<number> {
    return new Promise((resolve, reject) => {
      const p = new RawPeer(url, { headers });
      p.ws.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        p.ws.terminate();
      });
      p.ws.once('open', () => {
        resolve(101);
        p.close();
      });
      p.ws.once('error', (err) => reject(err));
    });
  }

  it('answers an upgrade on an unknown path with 404', async () => {
    srv = await startTestServer();
    expect(await upgradeStatus(`${srv.wsBase}/nowhere`)).toBe(404);
  });

  it('moves a dialect to another path, and turns one off', async () => {
    srv = await startTestServer({ dialects: { bus: { path: '/services' } } });
    expect(await upgradeStatus(`${srv.wsBase}/services`)).toBe(101);
    expect(await upgradeStatus(`${srv.wsBase}/bus`)).toBe(404);
    await srv.stop();
    srv = await startTestServer({ dialects: { bus: { enabled: false } } });
    expect(await upgradeStatus(`${srv.wsBase}/bus`)).toBe(404);
  });

  it('refuses upgrades past maxConnections with 503', async () => {
    srv = await startTestServer({ limits: { maxConnections: 2 } });
    const a = await RawPeer.open(`${srv.wsBase}/bus`);
    const b = await RawPeer.open(`${srv.wsBase}/bus`);
    expect(await upgradeStatus(`${srv.wsBase}/bus`)).toBe(503);
    a.close();
    await until(() => srv?.muster.transport.size === 1);
    expect(await upgradeStatus(`${srv.wsBase}/bus`)).toBe(101);
    b.close();
  });

  it('refuses handshakes past handshakesPerIpPerMinute with 429, until the minute is over', async () => {
    srv = await startTestServer({ limits: { handshakesPerIpPerMinute: 3 } });
    for (let i = 0; i < 3; i++) expect(await upgradeStatus(`${srv.wsBase}/bus`)).toBe(101);
    expect(await upgradeStatus(`${srv.wsBase}/bus`)).toBe(429);
    srv.clock.advance(60_000);
    expect(await upgradeStatus(`${srv.wsBase}/bus`)).toBe(101);
  });

  it('closes a frame over limits.maxPayload with 1009 at the socket layer', async () => {
    srv = await startTestServer({ limits: { maxPayload: 4096 }, dialects: { bus: { maxMessageBytes: 4096 } } });
    const p = await RawPeer.open(`${srv.wsBase}/bus`);
    p.send('x'.repeat(5000));
    expect((await p.waitClose()).code).toBe(1009);
    expect(p.frames).toEqual([]);
  });

  it('refuses new upgrades with 503 while shutting down', async () => {
    srv = await startTestServer();
    const p = await RawPeer.open(`${srv.wsBase}/bus`);
    // Hold the shutdown open: the peer does not answer the close at once.
    (p.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const stopping = srv.muster.stop();
    const status = await new Promise<number>((resolve) => {
      const q = new RawPeer(`${srv?.wsBase}/bus`);
      q.ws.once('unexpected-response', (_r, res) => resolve(res.statusCode ?? 0));
      q.ws.once('error', () => resolve(-1));
      q.ws.once('open', () => resolve(101));
    });
    expect([503, -1]).toContain(status);
    (p.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    await stopping;
    expect((await p.waitClose()).code).toBe(1001);
  });
});
