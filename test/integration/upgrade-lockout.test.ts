import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { BUS_TOKEN, RawPeer, startTestServer, until, type TestServer } from '../support/server.js';
import { roundTrip } from '../support/harness/bus.js';

/**
 * Every path out of a WebSocket upgrade gives back the connection slot it took
 * (issue #10 §1). Broken upgrades are sent over raw TCP, more of them than
 * `maxConnections`, and a well-formed upgrade must still be accepted afterwards.
 */

const MAX = 20;
const SHARDING_KEY = 'sharding-key-for-tests';
let srv: TestServer | undefined;
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
});

function upgradeRequest(opts: { method?: string; path?: string; headers?: Record<string, string> } = {}): string {
  const headers: Record<string, string> = {
    Host: 'localhost',
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
    ...opts.headers,
  };
  const lines = [`${opts.method ?? 'GET'} ${opts.path ?? '/bus'} HTTP/1.1`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`)];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** Sends raw bytes on a fresh TCP socket; resolves with what came back once the socket has closed. */
function rawExchange(port: number, data: string, after: 'wait' | 'end' | 'reset' = 'wait'): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(data);
      if (after === 'end') sock.end();
      if (after === 'reset') sock.resetAndDestroy();
    });
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => undefined);
    // A server that kept the broken upgrade open would never close it: the test's own
    // timeout fails it, so no real-time guard is armed here.
    sock.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
  });
}

const broken: Array<{ name: string; request: string; after?: 'end' | 'reset'; status?: number }> = [
  { name: 'a bad Sec-WebSocket-Key', request: upgradeRequest({ headers: { 'Sec-WebSocket-Key': 'not-a-key' } }), status: 400 },
  { name: 'a bad Sec-WebSocket-Version', request: upgradeRequest({ headers: { 'Sec-WebSocket-Version': '7' } }), status: 400 },
  { name: 'a POST', request: upgradeRequest({ method: 'POST', headers: { 'Content-Length': '0' } }), status: 405 },
  { name: 'a bad Sec-WebSocket-Protocol', request: upgradeRequest({ headers: { 'Sec-WebSocket-Protocol': 'a,,b' } }), status: 400 },
  { name: 'an Upgrade that is not websocket', request: upgradeRequest({ headers: { Upgrade: 'h2c' } }), status: 400 },
  { name: 'a dialect refusing it (no key)', request: upgradeRequest({ path: '/sharding' }), status: 401 },
  { name: 'the client resetting right after the request', request: upgradeRequest(), after: 'reset' },
  { name: 'the client half-closing right after the request', request: upgradeRequest(), after: 'end' },
];

async function gauges(s: TestServer): Promise<{ inProgress: number; connections: number }> {
  const text = await s.muster.metrics.registry.metrics();
  const inProgress = Number(/^muster_upgrades_in_progress (\d+)/m.exec(text)?.[1]);
  const connections = [...text.matchAll(/^muster_connections\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
  return { inProgress, connections };
}

describe('transport: broken upgrades give their slot back (no lockout)', () => {
  for (const kind of broken) {
    it(`accepts a good upgrade after ${MAX + 5} upgrades with ${kind.name}`, async () => {
      const s = await startTestServer({
        limits: { maxConnections: MAX, handshakesPerIpPerMinute: 10_000 },
        dialects: { sharding: { enabled: true, authorization: SHARDING_KEY } },
      });
      srv = s;
      const port = s.muster.address().port;
      for (let i = 0; i < MAX + 5; i++) {
        const answer = await rawExchange(port, kind.request, kind.after);
        if (kind.status !== undefined) expect(answer.split('\r\n')[0]).toContain(` ${kind.status} `);
      }
      // A reset or half-closed socket may have been opened and closed on the server's side.
      await until(() => s.muster.transport.size === 0 && s.muster.transport.upgrading === 0);
      expect(await gauges(s)).toEqual({ inProgress: 0, connections: 0 });

      // Slots are all free: MAX good upgrades are accepted at once, and one more is refused.
      const peers = await Promise.all(Array.from({ length: MAX }, () => RawPeer.open(`${s.wsBase}/bus`)));
      expect((await gauges(s)).connections).toBe(MAX);
      await expect(RawPeer.open(`${s.wsBase}/bus`)).rejects.toThrow('upgrade refused: 503');
      const first = peers[0] as RawPeer;
      first.send({ op: 1, data: { token: BUS_TOKEN } });
      await roundTrip(first);
      expect(first.isClosed).toBe(false);
      for (const p of peers) p.close();
      await Promise.all(peers.map((p) => p.waitClose()));
      await until(() => s.muster.transport.size === 0);
      expect(await gauges(s)).toEqual({ inProgress: 0, connections: 0 });
    });
  }

  it('accepts good upgrades once the per-IP window has passed, after upgrades refused by the per-IP limit', async () => {
    const s = await startTestServer({ limits: { maxConnections: 3, handshakesPerIpPerMinute: 3 } });
    srv = s;
    const port = s.muster.address().port;
    for (let i = 0; i < 10; i++) {
      const answer = await rawExchange(port, i < 3 ? upgradeRequest({ headers: { 'Sec-WebSocket-Key': 'bad' } }) : upgradeRequest());
      expect(answer.split('\r\n')[0]).toContain(i < 3 ? ' 400 ' : ' 429 ');
    }
    expect(await gauges(s)).toEqual({ inProgress: 0, connections: 0 });
    s.clock.advance(60_000);
    const peers = await Promise.all([1, 2, 3].map(() => RawPeer.open(`${s.wsBase}/bus`)));
    for (const p of peers) p.close();
    await Promise.all(peers.map((p) => p.waitClose()));
  });

  it('answers each upgrade past the per-IP limit with one whole 429 and closes it, holding nothing and logging nothing', async () => {
    const s = await startTestServer({ limits: { maxConnections: 3, handshakesPerIpPerMinute: 2 } });
    srv = s;
    const port = s.muster.address().port;
    const lines: unknown[] = [];
    for (const level of ['trace', 'debug', 'info', 'warn', 'error'] as const) {
      // The refusal path must not log per refusal (only counters); anything logged is caught here.
      (s.muster.logger as unknown as Record<string, (...a: unknown[]) => void>)[level] = (...a: unknown[]) => lines.push(a);
    }
    for (let i = 0; i < 2; i++) expect((await rawExchange(port, upgradeRequest({ headers: { 'Sec-WebSocket-Key': 'bad' } }))).split('\r\n')[0]).toContain(' 400 ');
    const answers = await Promise.all(Array.from({ length: 30 }, () => rawExchange(port, upgradeRequest())));
    for (const answer of answers) {
      const [head, body] = answer.split('\r\n\r\n') as [string, string];
      expect(head.split('\r\n')[0]).toBe('HTTP/1.1 429 Too Many Requests');
      expect(head).toContain('Connection: close');
      expect(head).toContain(`Content-Length: ${Buffer.byteLength(body)}`);
      expect(body).toBe('Too many handshakes from this address\n');
    }
    // A path with no endpoint is not echoed back.
    const notFound = await rawExchange(port, upgradeRequest({ path: '/nothing-here-<script>' }));
    expect(notFound.split('\r\n')[0]).toBe('HTTP/1.1 404 Not Found');
    expect(notFound).not.toContain('nothing-here');
    expect(lines).toEqual([]);
    expect(await gauges(s)).toEqual({ inProgress: 0, connections: 0 });
    const metrics = await s.muster.metrics.registry.metrics();
    expect(metrics).toMatch(/muster_upgrades_refused_total\{reason="rate_limited"\} 30/);
    expect(metrics).toMatch(/muster_upgrades_refused_total\{reason="not_found"\} 1/);
    s.clock.advance(60_000);
    const peer = await RawPeer.open(`${s.wsBase}/bus`);
    peer.send({ op: 1, data: { token: BUS_TOKEN } });
    await roundTrip(peer);
    peer.close();
    await peer.waitClose();
  });

  it('counts refusals by the socket layer as bad_handshake', async () => {
    const s = await startTestServer({ limits: { maxConnections: MAX } });
    srv = s;
    await rawExchange(s.muster.address().port, upgradeRequest({ headers: { 'Sec-WebSocket-Key': 'x' } }));
    await until(() => s.muster.transport.upgrading === 0);
    expect(await s.muster.metrics.registry.metrics()).toMatch(/muster_upgrades_refused_total\{reason="bad_handshake"\} 1/);
  });
});

/** Reads the server's frames after a 101 until a close frame; returns its code. */
function closeCodeAfter(port: number, request: string, frame: Buffer): Promise<number | undefined> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const sock = net.connect(port, '127.0.0.1', () => sock.write(request));
    sock.on('error', () => undefined);
    // No close frame ever: the test's own timeout fails it (no real-time guard here).
    const done = (code: number | undefined): void => {
      sock.destroy();
      resolve(code);
    };
    sock.on('close', () => done(undefined));
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!buf.subarray(0, 12).toString('latin1').includes(' 101')) return done(undefined);
        upgraded = true;
        buf = buf.subarray(end + 4);
        sock.write(frame);
      }
      // Server frames are unmasked; skip any greeting until the close frame.
      while (buf.length >= 2) {
        let len = (buf[1] as number) & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        }
        if (buf.length < off + len) return;
        if (((buf[0] as number) & 0x0f) === 0x8) return done(len >= 2 ? buf.readUInt16BE(off) : 1005);
        buf = buf.subarray(off + len);
      }
    });
  });
}

describe('transport: WebSocket protocol errors close with 1002 in every dialect', () => {
  // A masked, empty text frame with RSV2 set: no extension defines it.
  const rsv2 = Buffer.from([0xa1, 0x80, 1, 2, 3, 4]);
  // A client frame without a mask.
  const unmasked = Buffer.from([0x81, 0x00]);
  const paths: Array<[string, Record<string, string>]> = [
    ['/bus', {}],
    ['/sharding', { Authorization: SHARDING_KEY }],
    ['/api/socket', {}],
    ['/ws', { Authorization: 'disco-pw' }],
    ['/v2/server/ws', {}],
  ];
  it.each(paths)('%s', async (p, headers) => {
    const s = await startTestServer({
      dialects: {
        sharding: { enabled: true, authorization: SHARDING_KEY },
        clusterio: { enabled: true, authSecret: 'cluster-secret' },
        discodo: { enabled: true, password: 'disco-pw' },
        gamelist: { enabled: true, regTokens: ['reg'] },
      },
    });
    srv = s;
    const port = s.muster.address().port;
    expect(await closeCodeAfter(port, upgradeRequest({ path: p, headers }), rsv2)).toBe(1002);
    expect(await closeCodeAfter(port, upgradeRequest({ path: p, headers }), unmasked)).toBe(1002);
  });
});
