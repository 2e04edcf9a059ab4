import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { loadConfig } from '../../src/config/load.js';
import { startMuster, type Muster } from '../../src/server.js';
import { AUTH_FAILURE_LOG_LINES_PER_MINUTE } from '../../src/http/admin-guard.js';
import { ADMIN_TOKEN, BUS_TOKEN, RawPeer, startTestServer, type TestServer } from '../support/server.js';
import { roundTrip } from '../support/harness/bus.js';

/** Issue #10 §5: slow HTTP clients are cut, and the admin token cannot be brute-forced. */

let srv: TestServer | undefined;
let muster: Muster | undefined;
afterEach(async () => {
  await srv?.stop();
  await muster?.stop();
  srv = undefined;
  muster = undefined;
});

/** Opens a TCP socket, lets `drive` write to it, and resolves with what came back once the server closes it. */
function rawClient(port: number, drive: (sock: net.Socket) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = net.connect(port, '127.0.0.1', () => drive(sock));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => undefined);
    const guard = setTimeout(() => {
      sock.destroy();
      reject(new Error('the server kept a slow client open'));
    }, 5000);
    sock.on('close', () => {
      clearTimeout(guard);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
  });
}

/** Writes `bytes` one at a time every `everyMs` until the socket closes. */
function drip(sock: net.Socket, bytes: string, everyMs = 20): void {
  let i = 0;
  const t = setInterval(() => {
    if (sock.destroyed || i >= bytes.length) return clearInterval(t);
    sock.write(bytes[i++] as string);
  }, everyMs);
  sock.on('close', () => clearInterval(t));
}

describe('HTTP: header and request timeouts', () => {
  const timeouts = { http: { headersTimeout: 200, requestTimeout: 400 } };

  it('has defaults: headers within 10 s, the whole request within 30 s, an idle kept-alive connection closed after 5 s', () => {
    const config = loadConfig({ env: {}, overrides: {} });
    expect(config.http).toEqual({ headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 5_000 });
    expect(() => loadConfig({ env: {}, overrides: { http: { keepAliveTimeout: 999 } } })).toThrow(/http\.keepAliveTimeout = 999: shorter than the minimum \(1000 ms\)/);
  });

  it('answers 408 and closes a client that sends nothing', async () => {
    srv = await startTestServer(timeouts);
    const answer = await rawClient(srv.muster.address().port, () => undefined);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('answers 408 and closes a client whose headers trickle in (slowloris)', async () => {
    srv = await startTestServer(timeouts);
    const answer = await rawClient(srv.muster.address().port, (sock) => {
      sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
      drip(sock, 'X-Slow: '.padEnd(10_000, 'a'));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('answers 408 and closes a client whose body trickles in, and keeps serving others and WebSockets', async () => {
    srv = await startTestServer(timeouts);
    const port = srv.muster.address().port;
    const peer = await RawPeer.open(`${srv.wsBase}/bus`);
    peer.send({ op: 1, data: { token: BUS_TOKEN } });
    await roundTrip(peer);

    const answer = await rawClient(port, (sock) => {
      sock.write(
        `POST /api/v1/nothing HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n` +
          'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n',
      );
      drip(sock, ' '.repeat(1000));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);

    // The WebSocket has been open longer than both timeouts and is still served.
    await roundTrip(peer);
    expect(peer.isClosed).toBe(false);
    const ok = await fetch(`${srv.httpBase}/healthz`);
    expect(ok.status).toBe(200);
    peer.close();
  });
});

describe('HTTP: idle kept-alive connections', () => {
  it('closes a kept-alive connection left idle after a complete request once keepAliveTimeout has passed (not fastify\'s 72 s)', async () => {
    srv = await startTestServer({ http: { keepAliveTimeout: 1000 } });
    expect(srv.muster.http.server.keepAliveTimeout).toBe(1000);
    // One whole request, then silence: the server must close the socket (the guard in rawClient is 5 s).
    const answer = await rawClient(srv.muster.address().port, (sock) => sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'));
    const responses = answer.split('HTTP/1.1 ').filter(Boolean);
    expect(responses).toHaveLength(1);
    expect(responses[0]).toMatch(/^200 /);
    expect(answer).toMatch(/\r\nKeep-Alive: timeout=1\r\n/i);
  });

  it('serves a second request on a kept-alive connection within keepAliveTimeout', async () => {
    srv = await startTestServer({ http: { keepAliveTimeout: 5000 } });
    const answer = await rawClient(srv.muster.address().port, (sock) => {
      sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
      sock.once('data', () => sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    });
    expect(answer.split('HTTP/1.1 200 ').length - 1).toBe(2);
  });
});

describe('HTTP: failed admin tokens are limited per IP', () => {
  async function start(): Promise<{ m: Muster; clock: ManualClock; lines: Array<Record<string, unknown>>; raw: string[] }> {
    const clock = new ManualClock();
    const raw: string[] = [];
    const lines: Array<Record<string, unknown>> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString('utf8').split('\n').filter(Boolean)) {
          raw.push(l);
          lines.push(JSON.parse(l) as Record<string, unknown>);
        }
        cb();
      },
    });
    const config = loadConfig({
      env: {},
      overrides: {
        listen: { host: '127.0.0.1', port: 0 },
        store: { kind: 'memory' },
        admin: { token: ADMIN_TOKEN, failedAuthPerIpPerMinute: 5 },
        dialects: { sharding: { enabled: false }, clusterio: { enabled: false }, discodo: { enabled: false }, gamelist: { enabled: false }, bus: { token: BUS_TOKEN } },
      },
    });
    const m = await startMuster({ config, clock, logger: pino({ level: 'info' }, sink), defaultMetrics: false });
    muster = m;
    return { m, clock, lines, raw };
  }

  const get = (m: Muster, token: string | undefined): Promise<Response> =>
    fetch(`${m.url()}/api/v1/status`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });

  it('answers 429 with Retry-After once an IP has failed the limit, even with the right token, until the minute is over', async () => {
    const { m, clock } = await start();
    for (let i = 0; i < 5; i++) expect((await get(m, i % 2 ? undefined : `guess-${i}`)).status).toBe(401);
    const blocked = await get(m, ADMIN_TOKEN);
    expect(blocked.status).toBe(429);
    expect(blocked.headers.get('retry-after')).toBe('60');
    expect(await blocked.json()).toMatchObject({ error: 'RATE_LIMITED' });

    // Another address is not affected.
    const other = await m.http.inject({ url: '/api/v1/status', remoteAddress: '192.0.2.7', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    expect(other.statusCode).toBe(200);

    clock.advance(30_000);
    const later = await get(m, 'guess');
    expect(later.status).toBe(429);
    expect(later.headers.get('retry-after')).toBe('30');

    clock.advance(30_000);
    expect((await get(m, ADMIN_TOKEN)).status).toBe(200);
  });

  it('documents the 429 on every admin route in the OpenAPI document', async () => {
    const { m } = await start();
    const api = (await (await fetch(`${m.url()}/api/v1/openapi.json`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    const admin = Object.entries(api.paths).filter(([p]) => p.startsWith('/api/v1/'));
    expect(admin.length).toBeGreaterThan(0);
    for (const [p, ops] of admin) for (const op of Object.values(ops)) expect(Object.keys(op.responses), p).toEqual(expect.arrayContaining(['401', '429']));
  });

  it('does not count good tokens', async () => {
    const { m } = await start();
    for (let i = 0; i < 20; i++) expect((await get(m, ADMIN_TOKEN)).status).toBe(200);
    expect((await get(m, 'wrong')).status).toBe(401);
  });

  it('logs failures at warn, a bounded number of lines a minute, never the token', async () => {
    const { m, clock, lines, raw } = await start();
    const secretGuess = 'a-guess-that-must-not-be-logged';
    // Many addresses, so the per-IP block does not stop the failures.
    for (let i = 0; i < 40; i++) {
      const r = await m.http.inject({ url: '/api/v1/status', remoteAddress: `198.51.100.${i}`, headers: { authorization: `Bearer ${secretGuess}` } });
      expect(r.statusCode).toBe(401);
    }
    const warns = (): Array<Record<string, unknown>> => lines.filter((l) => l['level'] === 40);
    expect(warns()).toHaveLength(AUTH_FAILURE_LOG_LINES_PER_MINUTE);
    expect(warns()[0]).toMatchObject({ event: 'admin.auth_failed', remote: '198.51.100.0', route: '/api/v1/status', reason: 'wrong', method: 'GET' });

    clock.advance(60_000);
    await m.http.inject({ url: '/api/v1/status', remoteAddress: '203.0.113.1' });
    const last = warns().at(-1);
    expect(last).toMatchObject({ remote: '203.0.113.1', reason: 'missing', suppressed: 40 - AUTH_FAILURE_LOG_LINES_PER_MINUTE });
    for (const l of raw) {
      expect(l).not.toContain(secretGuess);
      expect(l).not.toContain(ADMIN_TOKEN);
    }
  });
});
