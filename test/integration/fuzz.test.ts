import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUS_TOKEN, RawPeer, startTestServer, until, type TestServer } from '../support/server.js';

/**
 * Seeded garbage at every dialect: random bytes, broken and hostile JSON, valid-looking
 * frames with wrong types. The server must answer each socket with a close (or keep it
 * open), never crash, never throw out of a handler, and release everything afterwards.
 */
const SEED = Number(process.env.MUSTER_FUZZ_SEED ?? 0x5eed);

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const AUTH: Record<string, Record<string, string>> = {
  sharding: { authorization: 'shard-key' },
  discodo: { authorization: 'disco-pw' },
};

const PATHS: Record<string, string> = {
  sharding: '/sharding',
  clusterio: '/api/socket',
  bus: '/bus',
  discodo: '/ws',
  gamelist: '/v2/server/ws',
};

function frames(rand: () => number): Array<string | Buffer> {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const big = ['870000000000000123', '9223372036854775807', '-9223372036854775809', '1e400', '-0', '0.1e-400'];
  const values = ['null', 'true', '[]', '{}', '""', '"x"', '-1', '1.5', ...big, '[[[[[]]]]]', '{"__proto__":{"x":1}}'];
  const keys = ['o', 'd', 'op', 'data', 'id', 'seq', 'type', 'metadata', 'intent', 'event', 'info', 'regToken', 't', 'token', 'name', 'shards', 'user_id', 'constructor', '__proto__'];
  const out: Array<string | Buffer> = [];
  for (let i = 0; i < 12; i++) {
    const r = rand();
    if (r < 0.15) {
      out.push(Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 64) }, () => Math.floor(rand() * 256))));
    } else if (r < 0.3) {
      out.push(pick(['{', '}', '{"o":', '[1,', 'nul', '"\\ud800"', '{"a":1}{"b":2}', '', ' ', '\u0000']));
    } else {
      const n = 1 + Math.floor(rand() * 4);
      const fields: string[] = [];
      for (let k = 0; k < n; k++) {
        const key = pick(keys);
        const v = rand() < 0.3 ? `{"${pick(keys)}":${pick(values)},"type":${Math.floor(rand() * 8) - 3},"id":${pick(values)}}` : rand() < 0.5 ? String(Math.floor(rand() * 20) - 2) : pick(values);
        fields.push(`"${key}":${v}`);
      }
      out.push(`{${fields.join(',')}}`);
    }
  }
  return out;
}

let srv: TestServer;
const uncaught: unknown[] = [];
const onUncaught = (err: unknown): void => {
  uncaught.push(err);
};

beforeAll(async () => {
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  srv = await startTestServer({
    limits: { handshakesPerIpPerMinute: 100000 },
    dialects: {
      sharding: { enabled: true, authorization: 'shard-key', botToken: 'bot', shardCount: 4, startupDelay: 1000 },
      clusterio: { enabled: true, authSecret: 'cluster-secret' },
      discodo: { enabled: true, password: 'disco-pw' },
      gamelist: { enabled: true, regTokens: ['reg'] },
    },
  });
});

afterAll(async () => {
  await srv.stop();
  process.off('uncaughtException', onUncaught);
  process.off('unhandledRejection', onUncaught);
});

/** A valid handshake per dialect, so the garbage also reaches the identified state. */
async function handshake(dialect: string, n: number): Promise<string[]> {
  switch (dialect) {
    case 'bus':
      return [JSON.stringify({ op: 1, data: { token: BUS_TOKEN } })];
    case 'discodo':
      return [`{"op":"IDENTIFY","d":{"user_id":${870000000000000000 + n},"shard_id":null}}`];
    case 'gamelist':
      return [
        `{"metadata":{"type":1,"id":${n}},"info":{"name":"s${n}","desc":"d","port":${1000 + n},"map":"m","playlist":"p","curPlayers":0,"maxPlayers":8,"gameState":0},"regToken":"reg"}`,
      ];
    case 'sharding':
      return [`{"o":10,"d":{"name":"fuzz-${n}"}}`];
    case 'clusterio': {
      const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setAudience('control').sign(new TextEncoder().encode('cluster-secret'));
      return [JSON.stringify({ seq: 1, type: 'register_control', data: { token, agent: 'fuzz', version: '2.0.0-alpha' } })];
    }
    default:
      return [];
  }
}

describe('fuzz: garbage at every dialect', () => {
  for (const dialect of Object.keys(PATHS)) {
    it(`${dialect} survives seeded garbage (seed ${SEED})`, async () => {
      const rand = lcg(SEED ^ dialect.length * 7919);
      for (let round = 0; round < 40; round++) {
        const peer = await RawPeer.open(`${srv.wsBase}${PATHS[dialect]}`, { headers: AUTH[dialect] ?? {} });
        const prefix = round % 2 === 0 ? await handshake(dialect, round) : [];
        for (const f of [...prefix, ...frames(rand)]) {
          if (peer.isClosed) break;
          if (typeof f === 'string') peer.ws.send(f);
          else peer.ws.send(f, { binary: rand() < 0.5 });
          srv.clock.advance(Math.floor(rand() * 2000));
        }
        peer.close();
        const closed = await peer.waitClose(5000);
        // Every close carries a code a server may send, or the client's own 1000.
        expect(closed.code === 1000 || closed.code === 1005 || (closed.code >= 1001 && closed.code <= 4999)).toBe(true);
      }
      await until(() => srv.muster.transport.size === 0, 5000);
      expect(uncaught).toEqual([]);
      const health = await srv.muster.http.inject({ url: '/healthz' });
      expect(health.statusCode).toBe(200);
    });
  }
});
