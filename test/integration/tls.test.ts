import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUS_TOKEN, RawPeer, startTestServer, type TestServer } from '../support/server.js';

let dir: string;
let srv: TestServer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'muster-tls-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ], { stdio: 'ignore' });
  srv = await startTestServer({ tls: { cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') } });
});
afterAll(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
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
