import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/dialects/clusterio/token.js';
import { MAX_JSON_DEPTH } from '../../src/protocols/json.js';
import { BUS_TOKEN, RawPeer, startTestServer, type TestServer } from '../support/server.js';

/**
 * What a peer may send before and after it has authenticated, in every dialect: JSON
 * nested deeper than MAX_JSON_DEPTH gets the dialect's bad-message close (never a
 * stack overflow and 1011), and the server carries on.
 */

const CLUSTERIO_SECRET = 'clusterio-secret';
const REG_TOKEN = 'reg-token';

let srv: TestServer;

beforeAll(async () => {
  srv = await startTestServer({
    limits: { handshakesPerIpPerMinute: 100000 },
    dialects: {
      sharding: { enabled: true, authorization: 'shard-key', botToken: 'bot', shardCount: 4, startupDelay: 1000 },
      clusterio: { enabled: true, authSecret: CLUSTERIO_SECRET },
      discodo: { enabled: true, password: 'disco-pw' },
      gamelist: { enabled: true, regTokens: [REG_TOKEN] },
    },
  });
});

afterAll(async () => {
  await srv.stop();
});

const nest = (n: number): string => '['.repeat(n) + ']'.repeat(n);

function registerFrame(id: string, extra = '', token = REG_TOKEN): string {
  const info = `{"name":"n","desc":"d","port":1,"map":"m","playlist":"p","curPlayers":0,"maxPlayers":8,"gameState":0${extra}}`;
  return `{"metadata":{"type":1,"id":${id}},"info":${info},"regToken":${JSON.stringify(token)}}`;
}

interface DialectCase {
  name: string;
  /** Opens a socket as far as the phase asks. */
  open(authenticated: boolean): Promise<RawPeer>;
  /** A frame of this dialect carrying `inner` somewhere in it. */
  frame(inner: string, authenticated: boolean): string;
  /** The dialect's bad-message close, before and after authentication. */
  badClose: { before: number; after: number };
}

const CASES: DialectCase[] = [
  {
    name: 'sharding',
    open: async (authenticated) => {
      const p = await RawPeer.open(`${srv.wsBase}/sharding`, { headers: { authorization: 'shard-key' } });
      if (authenticated) {
        p.send({ o: 10, d: { name: 'host-deep' } });
        await p.nextRaw();
      }
      return p;
    },
    frame: (inner, authenticated) => (authenticated ? `{"o":9,"d":{"x":${inner}}}` : `{"o":10,"d":{"name":"h","x":${inner}}}`),
    badClose: { before: 4004, after: 4004 },
  },
  {
    name: 'clusterio',
    open: async (authenticated) => {
      const p = await RawPeer.open(`${srv.wsBase}/api/socket`);
      await p.nextRaw(); // hello
      if (authenticated) {
        p.send({ seq: 1, type: 'register_control', data: { token: await mintToken(CLUSTERIO_SECRET, { aud: 'control' }), agent: 'a', version: 'v' } });
        expect(JSON.parse(await p.nextRaw()).type).toBe('ready');
      }
      return p;
    },
    frame: (inner, authenticated) =>
      authenticated ? `{"seq":2,"type":"list_slaves_request","data":{"x":${inner}}}` : `{"seq":1,"type":"register_control","data":{"x":${inner}}}`,
    badClose: { before: 1008, after: 4000 },
  },
  {
    name: 'bus',
    open: async (authenticated) => {
      const p = await RawPeer.open(`${srv.wsBase}/bus`);
      if (authenticated) {
        p.send({ op: 1, data: { token: BUS_TOKEN } });
        await p.nextRaw();
      }
      return p;
    },
    frame: (inner, authenticated) =>
      authenticated ? `{"op":0,"intent":{"target":"GLOBAL"},"data":${inner}}` : `{"op":1,"data":{"token":"x","deep":${inner}}}`,
    badClose: { before: 4002, after: 4002 },
  },
  {
    name: 'discodo',
    open: async (authenticated) => {
      const p = await RawPeer.open(`${srv.wsBase}/ws`, { headers: { authorization: 'disco-pw' } });
      await p.nextRaw(); // HELLO
      if (authenticated) {
        p.send({ op: 'IDENTIFY', d: { user_id: '870000000000000123' } });
        await p.nextRaw();
      }
      return p;
    },
    frame: (inner, authenticated) => (authenticated ? `{"op":"DISCORD_EVENT","d":{"t":"X","d":${inner}}}` : `{"op":"IDENTIFY","d":{"user_id":1,"x":${inner}}}`),
    badClose: { before: 4002, after: 4002 },
  },
  {
    name: 'gamelist',
    open: async (authenticated) => {
      const p = await RawPeer.open(`${srv.wsBase}/v2/server/ws`);
      if (authenticated) {
        p.send(registerFrame('1'));
        expect(JSON.parse(await p.nextRaw()).success).toBe(true);
      }
      return p;
    },
    frame: (inner) => registerFrame('2', `,"x":${inner}`),
    badClose: { before: 1008, after: 1008 },
  },
];

describe('JSON nested too deep', () => {
  for (const c of CASES) {
    for (const authenticated of [false, true]) {
      const phase = authenticated ? 'after' : 'before';
      it(`${c.name}: refused ${phase} authentication with the bad-message close (${c.badClose[phase]}), not 1011`, async () => {
        // 7000 levels are 14 KB: under every size limit, so depth alone decides.
        for (const depth of [MAX_JSON_DEPTH + 1, 3000, 7000]) {
          const p = await c.open(authenticated);
          p.send(c.frame(nest(depth), authenticated));
          const closed = await p.waitClose();
          expect(closed.code, `${c.name} ${phase} at depth ${depth}: ${closed.reason}`).toBe(c.badClose[phase]);
        }
        // The server is still answering this dialect.
        const p = await c.open(authenticated);
        p.close();
        await p.waitClose();
      });
    }
  }
});

/** Writes only the header of a masked text frame that announces `length` bytes: no payload follows. */
function announce(p: RawPeer, length: number): void {
  const head = Buffer.alloc(14);
  head[0] = 0x81; // FIN, text
  head[1] = 0x80 | 127; // masked, 64-bit length
  head.writeBigUInt64BE(BigInt(length), 2);
  head.writeUInt32BE(0x01020304, 10); // mask key
  (p.ws as unknown as { _socket: { write(b: Buffer): void } })._socket.write(head);
}

const CAP = 16 * 1024;
const spaces = (json: string, bytes: number): string => json.slice(0, -1) + ' '.repeat(bytes - json.length) + json.slice(-1);

interface CapCase {
  name: string;
  open(): Promise<RawPeer>;
  /** Authenticates an open socket. */
  authenticate(p: RawPeer): Promise<void>;
  /** A valid frame (JSON whitespace pads it to `bytes`) and a check of its answer. */
  valid(bytes: number): string;
  answered(p: RawPeer): Promise<void>;
}

const CAP_CASES: CapCase[] = [
  {
    name: 'bus',
    open: () => RawPeer.open(`${srv.wsBase}/bus`),
    authenticate: async (p) => {
      p.send({ op: 1, data: { token: BUS_TOKEN } });
      expect(JSON.parse(await p.nextRaw()).op).toBe(1);
    },
    valid: (bytes) => spaces('{"op":3}', bytes),
    answered: async (p) => expect(await p.nextRaw()).toBe('{"op":4}'),
  },
  {
    name: 'clusterio',
    open: async () => {
      const p = await RawPeer.open(`${srv.wsBase}/api/socket`);
      await p.nextRaw(); // hello
      return p;
    },
    authenticate: async (p) => {
      p.send({ seq: 1, type: 'register_control', data: { token: await mintToken(CLUSTERIO_SECRET, { aud: 'control' }), agent: 'a', version: 'v' } });
      expect(JSON.parse(await p.nextRaw()).type).toBe('ready');
    },
    valid: (bytes) => spaces('{"seq":2,"type":"list_slaves_request","data":{}}', bytes),
    answered: async (p) => expect(JSON.parse(await p.nextRaw()).type).toBe('list_slaves_response'),
  },
  {
    name: 'gamelist',
    open: () => RawPeer.open(`${srv.wsBase}/v2/server/ws`),
    authenticate: async (p) => {
      p.send(registerFrame('9223372036854775807'));
      // The INT64 id comes back digit for digit.
      expect(await p.nextRaw()).toMatch(/^\{"metadata":\{"type":-1,"id":9223372036854775807\},"success":true/);
    },
    valid: (bytes) => spaces(registerFrame('9223372036854775806'), bytes),
    answered: async (p) => expect(await p.nextRaw()).toMatch(/^\{"metadata":\{"type":-1,"id":9223372036854775806\},"success":true/),
  },
];

describe('frames before authentication are capped (preAuthMaxBytes, default 16 KiB)', () => {
  for (const c of CAP_CASES) {
    it(`${c.name}: a frame of exactly the cap is read; one byte more closes 1009 with a reason`, async () => {
      const at = await c.open();
      at.send(spaces('{"x":1}', CAP));
      // Whatever the dialect makes of it, it is not the size that closes it.
      const first = await Promise.race([at.closed, at.nextRaw().then(() => undefined)]);
      if (first) expect(first.code).not.toBe(1009);
      at.close();

      const over = await c.open();
      over.send(spaces('{"x":1}', CAP + 1));
      const closed = await over.waitClose();
      expect(closed.code).toBe(1009);
      expect(closed.reason).not.toBe('');
      if (c.name === 'bus') expect(JSON.parse(over.frames[0] ?? '{}')).toMatchObject({ op: 2, data: { reason: 'MESSAGE_TOO_BIG' } });
    });

    it(`${c.name}: a junk frame header announcing 1 MiB is refused at once, before its payload is buffered`, async () => {
      const p = await c.open();
      announce(p, 1024 * 1024);
      expect((await p.waitClose()).code).toBe(1009);
    });

    it(`${c.name}: once authenticated, frames past the pre-auth cap and the socket's pre-auth limit are read`, async () => {
      const p = await c.open();
      p.send(c.valid(CAP - 100));
      if (c.name === 'clusterio') {
        // A clusterio peer's first frame must be its handshake.
        expect((await p.waitClose()).code).toBe(1008);
      } else {
        await c.answered(p);
        p.close();
      }
      const q = await c.open();
      await c.authenticate(q);
      const big = c.name === 'bus' ? 30 * 1024 : 100 * 1024;
      q.send(c.valid(big));
      await c.answered(q);
      q.close();
    });
  }

  it('bus: after IDENTIFY, a frame over 4 × the cap meets maxMessageBytes (DISCONNECT first), not the socket layer', async () => {
    const p = await RawPeer.open(`${srv.wsBase}/bus`);
    p.send({ op: 1, data: { token: BUS_TOKEN } });
    await p.nextRaw();
    p.send(spaces('{"op":3}', 100 * 1024));
    expect((await p.waitClose()).code).toBe(1009);
    expect(JSON.parse(p.frames[0] ?? '{}')).toMatchObject({ op: 2, data: { reason: 'MESSAGE_TOO_BIG' } });
  });
});

describe('discodo: the password opens the socket to full-size frames', () => {
  it('with the password, a 100 KiB frame is read; the socket layer holds 4 × 16 KiB only for sockets without it', async () => {
    const p = await RawPeer.open(`${srv.wsBase}/ws`, { headers: { authorization: 'disco-pw' } });
    await p.nextRaw(); // HELLO
    p.send(`{"op":"HEARTBEAT","d":"${'x'.repeat(100 * 1024)}"}`);
    expect(JSON.parse(await p.nextRaw()).op).toBe('HEARTBEAT_ACK');
    p.close();
  });
});
