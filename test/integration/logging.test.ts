import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/core/clock.js';
import { loadConfig } from '../../src/config/load.js';
import { startMuster, type Muster } from '../../src/server.js';
import { FLEET_SECRETS, connectFleet, failedLogins, fleetConfig } from '../support/fleet.js';
import { until } from '../support/server.js';

/**
 * What an operator reads (docs/operations-log.md): every dialect's peers identified and
 * gone at info, failed authentications at warn, frames at trace, and never a secret.
 */

interface Line {
  level: number;
  msg: string;
  [k: string]: unknown;
}

let muster: Muster | undefined;
afterEach(async () => {
  await muster?.stop();
  muster = undefined;
});

async function start(level: string): Promise<{ muster: Muster; text: string[]; lines: () => Line[]; wsBase: string }> {
  const text: string[] = [];
  const logger = pino({ level }, { write: (s: string) => void text.push(s) });
  const config = loadConfig({
    env: {},
    overrides: { listen: { host: '127.0.0.1', port: 0 }, store: { kind: 'memory' }, shutdownTimeout: 2000, ...fleetConfig() } as never,
  });
  muster = await startMuster({ config, clock: new ManualClock(), logger, defaultMetrics: false });
  return { muster, text, lines: () => text.map((t) => JSON.parse(t) as Line), wsBase: muster.url().replace(/^http/, 'ws') };
}

const INFO = 30;
const DIALECTS = ['bus', 'sharding', 'clusterio', 'discodo', 'gamelist'];

describe('peer lifecycle in the log', () => {
  it('every dialect: identified and gone at info, with connection id, remote address, identity, close code, reason and why', async () => {
    const srv = await start('info');
    const fleet = await connectFleet(srv.wsBase);
    await fleet.exercise();
    await fleet.close();
    await until(() => srv.muster.transport.size === 0);
    const lines = srv.lines();
    for (const dialect of DIALECTS) {
      const ids = lines.filter((l) => l.event === 'peer.identified' && l.dialect === dialect);
      expect(ids.length, `${dialect} identified`).toBeGreaterThan(0);
      for (const l of ids) {
        expect(l.level).toBe(INFO);
        expect(l).toMatchObject({ conn: expect.any(String), remote: '127.0.0.1', identity: expect.any(String) });
      }
      const gone = lines.filter((l) => l.event === 'peer.gone' && l.dialect === dialect);
      expect(gone.map((l) => l.conn).sort(), `${dialect} gone`).toEqual(ids.map((l) => l.conn).sort());
      for (const l of gone) {
        expect(l.level).toBe(INFO);
        expect(l).toMatchObject({ remote: '127.0.0.1', identity: expect.any(String), code: expect.any(Number), reason: expect.any(String), why: expect.any(String) });
      }
    }
    expect(lines.find((l) => l.event === 'peer.identified' && l.dialect === 'clusterio' && String(l.identity).startsWith('slave 4242'))).toBeDefined();
    expect(lines.find((l) => l.event === 'peer.identified' && l.dialect === 'sharding')?.identity).toBe('log-control');
  });

  it('every dialect: handshakes and state changes at debug', async () => {
    const srv = await start('debug');
    const fleet = await connectFleet(srv.wsBase);
    await fleet.close();
    await until(() => srv.muster.transport.size === 0);
    const lines = srv.lines();
    for (const dialect of DIALECTS) {
      expect(lines.some((l) => l.event === 'peer.connected' && l.dialect === dialect && l.level === 20), `${dialect} connected`).toBe(true);
      const states = lines.filter((l) => l.event === 'peer.state' && l.dialect === dialect);
      expect(states.length, `${dialect} states`).toBeGreaterThan(0);
      for (const l of states) expect(l.from).not.toBe(l.to);
    }
  });

  it('says why: kicked, and shutdown', async () => {
    const srv = await start('info');
    const fleet = await connectFleet(srv.wsBase);
    const busConn = srv.muster.transport.connections().find((c) => c.identity === 'log-bus-a');
    expect(busConn).toBeDefined();
    srv.muster.transport.kick(busConn!.id);
    await until(() => srv.lines().some((l) => l.event === 'peer.gone' && l.conn === busConn!.id));
    expect(srv.lines().find((l) => l.event === 'peer.gone' && l.conn === busConn!.id)).toMatchObject({ why: 'kicked', code: 1008 });
    await srv.muster.stop();
    muster = undefined;
    const gone = srv.lines().filter((l) => l.event === 'peer.gone' && l.conn !== busConn!.id);
    expect(new Set(gone.map((l) => l.dialect))).toEqual(new Set(DIALECTS));
    for (const l of gone) expect(l.why, `${String(l.dialect)} at shutdown`).toBe('shutdown');
    await fleet.close();
  });

  it('warns of failed authentications with the remote address, at most a few per address', async () => {
    const srv = await start('warn');
    await failedLogins(srv.wsBase, srv.muster.url());
    const warns = srv.lines().filter((l) => l.event === 'peer.auth_failed');
    for (const d of DIALECTS) expect(warns.some((l) => l.dialect === d && l.remote === '127.0.0.1'), d).toBe(true);
    expect(srv.lines().some((l) => l.event === 'admin.auth_failed' && l.remote === '127.0.0.1' && l.route === '/api/v1/status')).toBe(true);
    // A peer that retries in a loop: the first few are logged, then nothing until the bucket refills.
    const before = warns.filter((l) => l.dialect === 'sharding').length;
    for (let i = 0; i < 20; i++) await failedLogins(srv.wsBase, srv.muster.url());
    const after = srv.lines().filter((l) => l.event === 'peer.auth_failed' && l.dialect === 'sharding').length;
    expect(after).toBeLessThanOrEqual(5);
    expect(after).toBeGreaterThanOrEqual(before);
  });

  it('logs every frame in and out at trace, size-capped', async () => {
    const srv = await start('trace');
    const fleet = await connectFleet(srv.wsBase);
    await fleet.bus.request(fleet.busPeer.id as string, 'BIG', 'x'.repeat(5000));
    await fleet.close();
    await until(() => srv.muster.transport.size === 0);
    const frames = srv.lines().filter((l) => l.event === 'peer.frame');
    for (const d of DIALECTS) {
      expect(frames.some((l) => l.dialect === d && l.dir === 'in'), `${d} in`).toBe(true);
      expect(frames.some((l) => l.dialect === d && l.dir === 'out'), `${d} out`).toBe(true);
    }
    const big = frames.filter((l) => (l.bytes as number) > 5000);
    expect(big.length).toBeGreaterThan(0);
    for (const l of big) expect((l.frame as string).length).toBeLessThanOrEqual(513);
  });
});

describe('no secret in the log', () => {
  it.each(['trace', 'debug', 'info', 'warn'])('at %s, after every dialect worked and refused', async (level) => {
    const srv = await start(level);
    await failedLogins(srv.wsBase, srv.muster.url());
    const fleet = await connectFleet(srv.wsBase);
    await fleet.exercise();
    await fleet.close();
    await until(() => srv.muster.transport.size === 0);
    await srv.muster.stop();
    muster = undefined;
    const all = srv.text.join('');
    expect(all.length).toBeGreaterThan(0);
    for (const [name, secret] of Object.entries(FLEET_SECRETS)) expect(all.includes(secret), `${name} in the log at ${level}`).toBe(false);
    for (const t of fleet.tokens) expect(all.includes(t), `a Clusterio token in the log at ${level}`).toBe(false);
    if (level === 'trace') expect(srv.lines().some((l) => l.event === 'peer.frame')).toBe(true);
  });
});
