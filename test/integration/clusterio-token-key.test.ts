import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mintToken } from '../../src/dialects/clusterio/token.js';
import { expectClose, rawOpen, SECRET, ClusterioHarness, type Frame } from '../support/harness/clusterio.js';

/**
 * The HMAC key of authSecret is imported once per secret: token checks (good tokens and
 * junk signed with another key alike) never import it again, and a SIGHUP reload of the
 * secret imports the new one once.
 */

const h = new ClusterioHarness();

function hmacImports(spy: { mock: { calls: unknown[][] } }): number {
  return spy.mock.calls.filter((c) => (c[2] as { name?: string } | undefined)?.name === 'HMAC').length;
}

async function registerControl(token: string): Promise<{ ok: boolean }> {
  const p = await rawOpen(h.srv);
  p.send({ seq: 1, type: 'register_control', data: { token, agent: 'clusterctl', version: '2.0.0-alpha' } });
  const f = JSON.parse(await p.nextRaw()) as Frame;
  if (f.type === 'ready') {
    p.close();
    await p.waitClose();
    return { ok: true };
  }
  expect(f).toMatchObject({ type: 'close', data: { reason: 'Authentication failed' } });
  expect((await p.waitClose()).code).toBe(4003);
  return { ok: false };
}

beforeEach(async () => {
  await h.start();
});

afterEach(async () => {
  vi.restoreAllMocks();
  await h.teardown();
});

describe('clusterio: the token key', () => {
  it('is imported once per secret, not on each check, junk tokens included', async () => {
    const good = await mintToken(SECRET, { aud: 'control' });
    const junk = await mintToken('another-secret', { aud: 'control' });
    const rotated = await mintToken('rotated-secret', { aud: 'control' });
    // The first check may finish the import the dialect started at boot.
    expect((await registerControl(good)).ok).toBe(true);
    const spy = vi.spyOn(globalThis.crypto.subtle, 'importKey');
    for (let i = 0; i < 5; i++) expect((await registerControl(junk)).ok).toBe(false);
    expect((await registerControl(good)).ok).toBe(true);
    expect(hmacImports(spy)).toBe(0);

    const c = h.srv.muster.config;
    h.srv.muster.reloadSecrets({ ...c, dialects: { ...c.dialects, clusterio: { ...c.dialects.clusterio, authSecret: 'rotated-secret' } } });
    expect(hmacImports(spy)).toBe(1);
    expect((await registerControl(good)).ok).toBe(false);
    expect((await registerControl(rotated)).ok).toBe(true);
    expect((await registerControl(junk)).ok).toBe(false);
    expect(hmacImports(spy)).toBe(1);
  });

  it('a reload with the same secret keeps the imported key', async () => {
    const spy = vi.spyOn(globalThis.crypto.subtle, 'importKey');
    const c = h.srv.muster.config;
    h.srv.muster.reloadSecrets({ ...c });
    expect(hmacImports(spy)).toBe(0);
    const raw = await rawOpen(h.srv);
    raw.send({ seq: 1, type: 'register_control', data: { token: 'not.a.jwt', agent: 'clusterctl', version: '2.0.0-alpha' } });
    await expectClose(raw, 'Authentication failed', 4003);
    expect(hmacImports(spy)).toBe(0);
  });
});
