import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusClient, ClusterioLink, DiscodoClient, GameServerClient, ShardingControl } from '../../src/client/index.js';
import { mintToken } from '../../src/dialects/clusterio/token.js';
import { loadConfig } from '../../src/config/load.js';
import { startMuster, type Muster } from '../../src/server.js';
import { instanceConfig } from '../support/harness/clusterio.js';

/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core) against
 * a real Muster on a real port and real clock, with real CONTROLs, a bus service and game
 * servers. MUSTER_SCREENSHOTS=1 also writes docs/screenshots/*.png.
 */

/** The little of the DOM the in-page callbacks use (this project's tsconfig has no DOM lib). */
interface Cell {
  readonly dataset: Record<string, string | undefined>;
}
declare const document: { querySelectorAll(sel: string): ArrayLike<Cell>; querySelector(sel: string): Cell | null };

const CHROMIUM = '/usr/bin/chromium';
const ADMIN = 'dashboard-admin-token';
const KEY = 'dashboard-sharding-key';
const BUS = 'dashboard-bus-token';
const REG = 'dashboard-reg-token';
const CLUSTERIO = 'dashboard-clusterio-secret';
const DISCODO = 'dashboard-discodo-password';
const SHARDS = 64;
const SCREENSHOTS = process.env.MUSTER_SCREENSHOTS === '1';
const SHOTS_DIR = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url));

let muster: Muster;
let base: string;
let context: BrowserContext;
let page: Page;
let profile: string;
const controls: ShardingControl[] = [];
const others: Array<{ close(): Promise<void> }> = [];

function control(name: string): ShardingControl {
  const c = new ShardingControl({
    url: `${base.replace(/^http/, 'ws')}/sharding`,
    authorization: KEY,
    name,
    reconnect: { minMs: 100, maxMs: 200 },
    heartbeatGrace: 1600,
    reconnectWindow: 3000,
    fenceMargin: 300,
    start: () => undefined,
    stop: () => undefined,
  });
  controls.push(c);
  return c;
}

async function shot(name: string): Promise<void> {
  if (!SCREENSHOTS) return;
  mkdirSync(SHOTS_DIR, { recursive: true });
  await page.screenshot({ path: join(SHOTS_DIR, `${name}.png`), fullPage: true });
}

/** Waits, in the page, until every shard cell is in one of `states` (and owned by one of `owners`, if given). */
async function cellsAll(states: string[], owners: string[] | null = null, timeout = 15_000): Promise<void> {
  await page.waitForFunction(
    ({ n, states, owners }) => {
      const cells = Array.from(document.querySelectorAll('[data-shard]'));
      return cells.length === n && cells.every((c) => states.includes(c.dataset.state ?? '') && (owners === null || owners.includes(c.dataset.owner ?? '')));
    },
    { n: SHARDS, states, owners },
    { timeout, polling: 50 },
  );
}

async function view(title: string): Promise<void> {
  await page.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: title, exact: true }).click();
}

describe.skipIf(!existsSync(CHROMIUM))('dashboard in Chromium', () => {
  beforeAll(async () => {
    const config = loadConfig({
      env: {},
      overrides: {
        listen: { host: '127.0.0.1', port: 0 },
        store: { kind: 'memory' },
        admin: { token: ADMIN },
        log: { level: 'silent' },
        shutdownTimeout: 2000,
        dialects: {
          sharding: {
            authorization: KEY,
            botToken: 'bot-token',
            shardCount: SHARDS,
            maxConcurrency: 16,
            startup: 'parallel',
            expectedControls: 2,
            startupDelay: 200,
            // Small, with room for a loaded machine: a missed deadline would flap the CONTROLs.
            heartbeatInterval: 1000,
            heartbeatGrace: 1000,
            reconnectWindow: 3000,
            fenceMargin: 300,
            connectTimeout: 5000,
            identifyWindow: 100,
          },
          bus: { token: BUS },
          gamelist: { regTokens: [REG] },
          clusterio: { authSecret: CLUSTERIO },
          discodo: { password: DISCODO },
        },
      } as never,
    });
    muster = await startMuster({ config, logger: pino({ level: 'silent' }), defaultMetrics: false });
    base = muster.url();
    await Promise.all([control('alpha').connect(), control('bravo').connect()]);
    const bus = new BusClient({ url: `${base.replace(/^http/, 'ws')}/bus`, token: BUS, name: 'billing', group: 'workers', reconnect: false });
    const bus2 = new BusClient({ url: `${base.replace(/^http/, 'ws')}/bus`, token: BUS, name: 'mailer', group: 'workers', reconnect: false });
    await Promise.all([bus.connect(), bus2.connect()]);
    others.push(bus, bus2);
    const maps = ['mp_glitch', 'mp_forwardbase_kodai', 'mp_thaw'];
    for (let i = 0; i < 6; i++) {
      const gs = new GameServerClient({
        url: `${base.replace(/^http/, 'ws')}/v2/server/ws`,
        regToken: REG,
        reconnect: false,
        info: { name: `Server ${i + 1}`, desc: i % 2 ? 'casual' : 'competitive', port: 37015 + i, map: maps[i % 3]!, playlist: i % 2 ? 'aitdm' : 'ps', curPlayers: i * 2, maxPlayers: 12 - (i % 2) * 2, gameState: 1 },
      });
      await gs.connect();
      others.push(gs);
    }

    profile = mkdtempSync(join(tmpdir(), 'muster-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1280, height: 860 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('dialog', (d) => void d.accept());
  }, 30_000);

  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    for (const c of controls) await c.close();
    for (const o of others) await o.close().catch(() => undefined);
    await muster?.stop();
  });

  it('refuses a wrong token and keeps it nowhere', async () => {
    await page.goto(base);
    await page.getByLabel('Admin token').fill('not-the-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('refused');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    expect(await context.cookies()).toEqual([]);
    await shot('login');
  });

  it('signs in, keeps the token in session storage only, and shows the shard grid with owners', async () => {
    await page.getByLabel('Admin token').fill(ADMIN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    expect(page.url()).not.toContain(ADMIN);
    expect(await page.evaluate(() => sessionStorage.getItem('muster.adminToken'))).toBe(ADMIN);
    expect(await context.cookies()).toEqual([]);
    await page.getByText('● live').waitFor();
    await shot('overview');

    await view('Shards');
    await cellsAll(['connected'], ['alpha', 'bravo']);
    // Rebalance from the page (it asks first): the shards spread over both CONTROLs.
    await page.getByRole('button', { name: 'Rebalance' }).click();
    await page.waitForFunction(() => new Set(Array.from(document.querySelectorAll('[data-shard]')).map((c) => c.dataset.owner)).size === 2, undefined, { timeout: 10_000, polling: 50 });
    await cellsAll(['connected'], ['alpha', 'bravo']);
    // Owner on click, and state as text (not colour only).
    await page.locator('[data-shard="5"]').click();
    await expect.poll(() => page.getByTestId('shard-detail').textContent()).toMatch(/^Shard 5: connected \(connected\), owner (alpha|bravo)$/);
    expect(await page.locator('[data-shard="5"]').getAttribute('title')).toMatch(/Shard 5: connected, owner (alpha|bravo)/);
    // Sparklines fill in as heartbeats are answered.
    await page.locator('svg[aria-label^="alpha heartbeat latency"]').waitFor({ timeout: 10_000 });
    await expect.poll(() => page.getByTestId('budget').textContent()).toMatch(/daily sessions left: \d+/);
    await shot('shards');
    if (SCREENSHOTS) {
      await page.emulateMedia({ colorScheme: 'dark' });
      await shot('shards-dark');
      await page.emulateMedia({ colorScheme: 'light' });
    }
  }, 30_000);

  it("shows a killed CONTROL's shards as offloading, then moved to the other", async () => {
    const alphaShards = await page.$$eval('[data-owner="alpha"]', (cells) => cells.map((c) => (c as unknown as Cell).dataset.shard ?? ''));
    expect(alphaShards.length).toBeGreaterThan(0);
    await controls[0]!.close();
    await page.waitForFunction(
      (ids: string[]) => ids.every((id) => document.querySelector(`[data-shard="${id}"]`)?.dataset.state === 'disconnected'),
      alphaShards,
      { timeout: 10_000, polling: 50 },
    );
    expect(await page.locator(`[data-shard="${alphaShards[0]}"]`).textContent()).toBe('✕');
    await shot('shards-offloading');
    await cellsAll(['connected'], ['bravo']);
  }, 30_000);

  it('lists peers per dialect and kicks a bus service', async () => {
    await view('Peers');
    await page.getByRole('button', { name: /^bus \(2\)$/ }).waitFor();
    await page.getByRole('button', { name: /^all/ }).click();
    // One process: no cluster strip and no Instance column (each peer still names its instance in the API).
    await page.getByRole('columnheader', { name: 'Remote address' }).waitFor();
    expect(await page.getByRole('columnheader', { name: 'Instance' }).count()).toBe(0);
    expect(await page.getByRole('region', { name: 'Cluster instances' }).count()).toBe(0);
    await shot('peers');

    await view('Bus');
    await page.getByRole('heading', { name: 'Bus: 2 services' }).waitFor();
    await page.getByRole('button', { name: 'Kick billing' }).click();
    await page.getByRole('heading', { name: 'Bus: 1 services' }).waitFor({ timeout: 10_000 });
    expect(await page.getByRole('cell', { name: 'billing', exact: true }).count()).toBe(0);
    await shot('bus');
  }, 30_000);

  it('filters the game list', async () => {
    await view('Game list');
    await page.getByRole('heading', { name: 'Game list: 6 of 6 servers' }).waitFor();
    expect(await page.getByRole('columnheader', { name: 'Instance' }).count()).toBe(0);
    await page.getByLabel('Map').selectOption('mp_thaw');
    await page.getByRole('heading', { name: 'Game list: 2 of 6 servers' }).waitFor();
    await page.getByRole('button', { name: 'Clear' }).click();
    await page.getByLabel('not empty').check();
    await page.getByRole('heading', { name: 'Game list: 5 of 6 servers' }).waitFor();
    await page.getByRole('button', { name: 'Clear' }).click();
    await shot('gamelist');
  }, 20_000);

  it('stays usable with 1,024 shards and 10,000 game servers (virtualised table, keyboard grid)', async () => {
    // The page alone, fed synthetic admin API answers of that size: the feed is served by
    // the browser's request interception, so only the page's own work is measured.
    const scale = await context.newPage();
    await scale.addInitScript((t) => sessionStorage.setItem('muster.adminToken', t), ADMIN);
    const status = { version: 'x', uptimeSeconds: 60, store: 'memory', connections: { sharding: 32, gamelist: 10_000 }, dialects: { sharding: { path: '/sharding' }, gamelist: { path: '/v2/server/ws' } } };
    const shards = Array.from({ length: 1024 }, (_, id) => ({ id, owner: `host-${id % 32}`, state: id % 97 === 0 ? 'disconnected' : 'connected' }));
    const fleet = { halted: false, shardCount: 1024, maxConcurrency: 16, budgetRemaining: 900, budgetExhausted: false, identifyQueueDepth: 3, phase: 'running', haltReason: null, controls: Array.from({ length: 32 }, (_, i) => ({ name: `host-${i}`, sessionId: 's', state: 'ready', shards: [], redundant: false, capacity: 1, lastHeartbeatMs: 0 })) };
    const servers = Array.from({ length: 10_000 }, (_, i) => ({ server_id: `gs-${i}`, name: `Server ${i}`, desc: '', map: `map_${i % 7}`, playlist: 'ps', curPlayers: i % 13, maxPlayers: 12, hasPassword: i % 5 === 0, gameState: 1, address: '10.0.0.1', port: 37015, connectionId: `c${i}` }));
    const sse = (topic: string, body: unknown): string => `event: snapshot\ndata: ${JSON.stringify({ topic, at: new Date().toISOString(), status: 200, body })}\n\n`;
    await scale.route('**/api/v1/events?**', (route) =>
      route.fulfill({
        status: 200,
        contentType: 'text/event-stream',
        body: sse('status', status) + sse('sharding', fleet) + sse('sharding.shards', shards) + sse('peers', { counts: {}, peers: [] }) + sse('gamelist.servers', servers),
      }),
    );
    const t0 = Date.now();
    await scale.goto(`${base}/#shards`);
    await scale.waitForFunction(() => document.querySelectorAll('[data-shard]').length === 1024, undefined, { timeout: 15_000 });
    const gridMs = Date.now() - t0;
    // The grid is one tab stop; arrow keys move within it.
    await scale.locator('[data-shard="0"]').focus();
    await scale.keyboard.press('ArrowRight');
    await scale.keyboard.press('ArrowDown');
    expect(await scale.evaluate(() => (globalThis as unknown as { document: { activeElement: Cell | null } }).document.activeElement?.dataset.shard)).toBe('33');
    expect(await scale.locator('[data-shard][tabindex="0"]').count()).toBe(1);

    const t1 = Date.now();
    await scale.getByRole('navigation', { name: 'Views' }).getByRole('link', { name: 'Game list', exact: true }).click();
    await scale.getByRole('heading', { name: 'Game list: 10000 of 10000 servers' }).waitFor({ timeout: 15_000 });
    const listMs = Date.now() - t1;
    const rows = await scale.locator('table[aria-rowcount="10001"] tbody tr').count();
    expect(rows).toBeLessThan(100);
    // Scrolling to the end renders the last rows (sorted by players, then name).
    await scale.locator('.vt').evaluate((el) => {
      (el as unknown as { scrollTop: number; scrollHeight: number }).scrollTop = (el as unknown as { scrollHeight: number }).scrollHeight;
    });
    await scale.getByRole('cell', { name: 'Server 9984', exact: true }).waitFor({ timeout: 5000 });
    await scale.getByLabel('Name or description').fill('Server 4242');
    await scale.getByRole('heading', { name: 'Game list: 1 of 10000 servers' }).waitFor({ timeout: 5000 });
    if (SCREENSHOTS) console.log(`dashboard scale: 1,024-shard grid shown ${gridMs} ms after navigation; 10,000-server list view ${listMs} ms; ${rows} table rows in the DOM`);
    await scale.close();
  }, 40_000);

  it('shows Clusterio slaves with their instances, and discodo sessions with their voice clients', async () => {
    const ws = base.replace(/^http/, 'ws');
    const slave = new ClusterioLink({ url: `${ws}/api/socket`, role: 'slave', id: 7, name: 'factory-host', token: await mintToken(CLUSTERIO, { aud: 'slave', id: '7' }), reconnect: false });
    const ctl = new ClusterioLink({ url: `${ws}/api/socket`, role: 'control', token: await mintToken(CLUSTERIO, { aud: 'control' }), reconnect: false });
    others.push(slave, ctl);
    await slave.connect();
    await ctl.connect();
    await ctl.request('create_instance_request', { serialized_config: instanceConfig(31, 'nauvis', 7) as never });
    await ctl.request('create_instance_request', { serialized_config: instanceConfig(32, 'spare') as never });
    await view('Clusterio');
    await page.getByRole('heading', { name: 'Clusterio: 1 slaves' }).waitFor();
    await page.getByRole('cell', { name: 'factory-host (connected)' }).waitFor();
    await page.getByRole('cell', { name: '— (unassigned)' }).waitFor();
    await shot('clusterio');

    const dd = new DiscodoClient({ url: `${ws}/ws`, password: DISCODO, userId: '870000000000000123', reconnect: false });
    others.push(dd);
    await dd.connect();
    dd.forwardDiscordEvent({ t: 'VOICE_STATE_UPDATE', d: { guild_id: '555000000000000001', channel_id: '555000000000000002', user_id: '870000000000000123', session_id: 'abc' } });
    dd.forwardDiscordEvent({ t: 'VOICE_SERVER_UPDATE', d: { guild_id: '555000000000000001', token: 'tok', endpoint: 'x.discord.media:443' } });
    await view('Discodo');
    await page.getByRole('heading', { name: 'Discodo: 1 sessions' }).waitFor();
    // Snowflakes beyond 2^53 keep every digit on the way to the page.
    await page.getByRole('cell', { name: '870000000000000123', exact: true }).first().waitFor();
    await page.getByRole('cell', { name: '555000000000000001', exact: true }).waitFor({ timeout: 10_000 });
    await shot('discodo');
  }, 20_000);

  it('halts the fleet from the page, and resumes it', async () => {
    await view('Shards');
    await page.getByRole('button', { name: 'Halt fleet' }).click();
    await expect.poll(() => page.getByTestId('phase').textContent(), { timeout: 10_000 }).toContain('HALTED');
    await cellsAll(['halted']);
    expect(muster.dialect('sharding')!.summary!().halted).toBe(true);
    await shot('shards-halted');
    await page.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(() => page.getByTestId('phase').textContent(), { timeout: 10_000 }).toMatch(/^phase: /);
    expect(muster.dialect('sharding')!.summary!().halted).toBe(false);
  }, 20_000);
});
