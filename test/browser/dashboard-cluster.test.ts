import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusClient, ClusterioLink, GameServerClient } from '../../src/client/index.js';
import { mintToken } from '../../src/dialects/clusterio/token.js';
import { ensureBuilt, SECRETS } from '../chaos/server.js';
import { FAST, MusterCluster, pollUntil, type Instance } from '../support/muster-cluster.js';
import { haveRedisServer } from '../support/redis-server.js';

/**
 * The dashboard in cluster mode, in a real browser (Debian's chromium through
 * playwright-core): two built Muster processes (inst-0, inst-1) on a private
 * redis-server, a bus service, a game server and a Clusterio slave on each, and the page
 * served by inst-0.
 * Every table of rows with an instance shows an Instance column naming both; the cluster
 * strip lists both instances as answered, and once inst-1 is killed it shows inst-1
 * missing with a warning that the lists are partial. (The single-process case, where
 * neither the column nor the strip appears, is in dashboard.test.ts.) MUSTER_SCREENSHOTS=1
 * also writes docs/screenshots/cluster-*.png.
 */

const CHROMIUM = '/usr/bin/chromium';
/**
 * Long enough that a killed instance is still listed (as missing) for several seconds
 * before its presence runs out; short enough that each finds the other within 3 s.
 */
const PRESENCE_TTL = 9000;
const SCREENSHOTS = process.env.MUSTER_SCREENSHOTS === '1';
const SHOTS_DIR = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url));

let cluster: MusterCluster;
let context: BrowserContext;
let page: Page;
let profile: string;
const peers: Array<{ close(): Promise<void> }> = [];

function inst(i: number): Instance {
  return cluster.instances[i] as Instance;
}

async function shot(name: string): Promise<void> {
  if (!SCREENSHOTS) return;
  mkdirSync(SHOTS_DIR, { recursive: true });
  await page.screenshot({ path: join(SHOTS_DIR, `${name}.png`), fullPage: true });
}

async function view(title: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: title, exact: true }).click();
}

/** The texts of column `title` in the table labelled `label`. */
async function columnTexts(label: string, title: string): Promise<string[]> {
  const table = page.getByRole('table', { name: label });
  const headers = await table.getByRole('columnheader').allTextContents();
  const k = headers.indexOf(title);
  if (k < 0) return [];
  return table.locator(`tbody tr:not(.spacer) td:nth-child(${k + 1})`).allTextContents();
}

describe.skipIf(!existsSync(CHROMIUM) || !haveRedisServer)('dashboard in Chromium, cluster mode (two processes on one Redis)', () => {
  beforeAll(async () => {
    ensureBuilt();
    cluster = await MusterCluster.start({ instances: 2, controls: 0, timing: { ...FAST, presenceTtl: PRESENCE_TTL } });
    for (const i of [0, 1]) {
      const ws = inst(i).server?.ws ?? '';
      const bus = new BusClient({ url: `${ws}/bus`, token: SECRETS.bus, name: `svc-${i}`, group: 'workers', reconnect: false });
      const gs = new GameServerClient({
        url: `${ws}/v2/server/ws`,
        regToken: SECRETS.gamelist,
        reconnect: false,
        info: { name: `Server on ${i}`, desc: '', port: 37015 + i, map: 'mp_glitch', playlist: 'ps', curPlayers: i, maxPlayers: 12, gameState: 1 },
      });
      const slave = new ClusterioLink({ url: `${ws}/api/socket`, role: 'slave', id: 10 + i, name: `host-${i}`, token: await mintToken(SECRETS.clusterio, { aud: 'slave', id: String(10 + i) }), reconnect: false });
      peers.push(bus, gs, slave);
      await bus.connect();
      await gs.connect();
      await slave.connect();
    }
    // Each instance has found the other (the status of either lists both, both answering).
    const found = await pollUntil(async () => {
      const r = await fetch(`${inst(0).server?.base}/api/v1/status`, { headers: { authorization: `Bearer ${SECRETS.admin}` } });
      const body = (await r.json()) as { instances: Array<{ answered: boolean }> };
      return body.instances.length === 2 && body.instances.every((x) => x.answered);
    }, 15_000);
    expect(found).toBe(true);

    profile = mkdtempSync(join(tmpdir(), 'muster-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 860 },
    });
    page = context.pages()[0] ?? (await context.newPage());
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    for (const p of peers) await p.close().catch(() => undefined);
    await cluster?.close();
  }, 30_000);

  it('shows which instance each peer, bus service and group, Clusterio slave and game server is on, and both instances answering', async () => {
    await page.goto(inst(0).server?.base ?? '');
    await page.getByLabel('Admin token').fill(SECRETS.admin);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();

    const strip = page.getByRole('region', { name: 'Cluster instances' });
    await strip.waitFor();
    await expect.poll(() => strip.locator('li').allTextContents()).toEqual(['● inst-0 answered, 3 connections (this one)', '● inst-1 answered, 3 connections']);
    expect(await strip.getByRole('alert').count()).toBe(0);

    await view('Peers');
    await page.getByRole('button', { name: /^bus \(2\)$/ }).click();
    await expect.poll(() => columnTexts('Peers (bus)', 'Instance'), { timeout: 10_000 }).toEqual(['inst-0', 'inst-1']);
    expect(await columnTexts('Peers (bus)', 'Identity')).toEqual(['svc-0', 'svc-1']);
    await page.getByRole('button', { name: /^all/ }).click();
    await shot('cluster-peers');

    await view('Bus');
    await page.getByRole('heading', { name: 'Bus: 2 services' }).waitFor({ timeout: 10_000 });
    const services = async (): Promise<string[][]> => {
      const [names, at] = await Promise.all([columnTexts('Bus services', 'Service'), columnTexts('Bus services', 'Instance')]);
      return names.map((n, k) => [n, at[k] ?? '']).sort();
    };
    await expect.poll(services).toEqual([
      ['svc-0', 'inst-0'],
      ['svc-1', 'inst-1'],
    ]);
    // One row per group and instance.
    expect(await columnTexts('Bus groups', 'Instance')).toEqual(['inst-0', 'inst-1']);

    await view('Clusterio');
    await page.getByRole('heading', { name: 'Clusterio: 2 slaves' }).waitFor({ timeout: 10_000 });
    // The API names the instance of a slave on another one; a connected slave without one is on the instance answering.
    const slaves = async (): Promise<string[][]> => {
      const [names, at] = await Promise.all([columnTexts('Clusterio slaves', 'Name'), columnTexts('Clusterio slaves', 'Instance')]);
      return names.map((n, k) => [n, at[k] ?? '']).sort();
    };
    await expect.poll(slaves).toEqual([
      ['host-0', 'inst-0'],
      ['host-1', 'inst-1'],
    ]);

    await view('Game list');
    await page.getByRole('heading', { name: 'Game list: 2 of 2 servers' }).waitFor({ timeout: 10_000 });
    // Sorted by players: the one on inst-1 (1 player) first.
    await expect.poll(() => columnTexts('Game servers', 'Instance')).toEqual(['inst-1', 'inst-0']);
  }, 40_000);

  it('warns that the lists are partial while an instance does not answer', async () => {
    await view('Peers');
    await cluster.kill9(inst(1));
    const strip = page.getByRole('region', { name: 'Cluster instances' });
    // inst-1 is still within its presence TTL: asked, and missing from the answer.
    const missing = strip.locator('li[data-instance="inst-1"][data-answered="false"]');
    await missing.waitFor({ timeout: 8000 });
    expect(await missing.textContent()).toBe('✖ inst-1 missing');
    expect(await missing.getAttribute('title')).toBe('no answer in time');
    expect(await strip.getByRole('alert').textContent()).toMatch(/^Partial lists: inst-1 \(no answer in time\) is missing\. Its connections are not in/);
    expect(await strip.locator('li').first().textContent()).toMatch(/^● inst-0 answered/);
    // The peer list is now inst-0's alone.
    await page.getByRole('button', { name: /^all/ }).click();
    await expect.poll(() => columnTexts('Peers (all)', 'Instance'), { timeout: 10_000 }).toEqual(['inst-0', 'inst-0', 'inst-0']);
    await shot('cluster-partial');
  }, 30_000);
});
