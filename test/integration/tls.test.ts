import { request } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUS_TOKEN, RawPeer, startTestServer, type TestServer } from '../support/server.js';

// A self-signed pair for localhost kept with the tests (valid for a century), so the
// suite needs no openssl on the machine.
const dir = join(import.meta.dirname, '../fixtures/tls');
let srv: TestServer;

beforeAll(async () => {
  srv = await startTestServer({ tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') } });
});
afterAll(async () => {
  await srv.stop();
});

describe('TLS', () => {
  it('serves https and wss on the same port', async () => {
    expect(srv.httpBase).toMatch(/^https:/);
    const status = await new Promise<number>((resolve, reject) => {
      request(`${srv.httpBase}/healthz`, { rejectUnauthorized: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      })
        .on('error', reject)
        .end();
    });
    expect(status).toBe(200);
    const peer = await RawPeer.open(`${srv.wsBase}/bus`, { rejectUnauthorized: false });
    peer.send({ op: 1, data: { token: BUS_TOKEN } });
    expect((await peer.next<{ op: number }>()).op).toBe(1);
    peer.close();
    await peer.waitClose();
  });
});
