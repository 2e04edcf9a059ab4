import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClusterioLink, ClusterioLinkError, type LinkTimers } from '../../src/client/clusterio.js';
import { serverRoundTrip, until } from '../support/server.js';
import { controlToken, dialectOf, instanceConfig, Seed2020, slaveToken, ClusterioHarness } from '../support/harness/clusterio.js';
import { mulberry32 as prng } from '../support/random.js';

/**
 * Property tests of sessions, over real sockets: random traffic in both directions
 * through links whose sockets are cut at random points. Generation is seeded (the seed
 * is in the test name) so a failure replays exactly.
 *
 * Properties:
 *  1. While every session resumes within sessionTimeout, every message is delivered
 *     exactly once and in order, in each direction (slave → master → control output
 *     events; control → master → slave requests; slave → master → control answers).
 *  2. When a session is invalidated, every request it was waiting on is rejected
 *     with a typed error (ClusterioLinkError SESSION_INVALIDATED), and none resolves.
 */

const h = new ClusterioHarness();
const links: ClusterioLink[] = [];
const seeds: Seed2020[] = [];

beforeEach(async () => {
  // Every cut is a new handshake: lift the per-IP handshake budget for these runs.
  await h.start({}, { limits: { handshakesPerIpPerMinute: 1_000_000 } });
});

afterEach(async () => {
  for (const l of links.splice(0)) await l.close();
  for (const s of seeds.splice(0)) s.close();
  await h.teardown((srv) => {
    srv.clock.advance(60_000);
    const sum = dialectOf(srv).summary();
    expect([sum.connections, sum.slaves, sum.controls, sum.sessions, sum.pendingRequests]).toEqual([0, 0, 0, 0, 0]);
  }, 10_000);
});

async function makeLink(role: 'slave' | 'control', extra: Partial<ConstructorParameters<typeof ClusterioLink>[0]> = {}): Promise<ClusterioLink> {
  const l = new ClusterioLink({
    url: h.url,
    role,
    token: role === 'slave' ? await slaveToken(4242) : await controlToken(),
    ...(role === 'slave' ? { id: 4242, name: 'prop-slave' } : {}),
    reconnect: { minMs: 1, maxMs: 3 },
    ...extra,
  });
  l.on('error', () => undefined);
  links.push(l);
  await l.connect();
  return l;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('clusterio sessions: property tests', () => {
  for (const [seed, cutsWanted] of [
    [1, 1000],
    [7, 150],
    [42, 150],
  ] as const) {
    it(`delivers everything exactly once, in order, both ways, across ${cutsWanted} random cuts (seed ${seed})`, async () => {
      const rand = prng(seed);
      const slave = await makeLink('slave');
      const commands: number[] = [];
      slave.handle('send_rcon_request', (data) => {
        commands.push(Number(data.command));
        return { result: `r${data.command}` };
      });
      const control = await makeLink('control');
      await control.request('create_instance_request', { serialized_config: instanceConfig(1, 'p', 4242) as never });
      await control.request('set_instance_output_subscriptions_request', { instance_ids: [1] });
      const outputs: number[] = [];
      control.on('instance_output_event', (d: { output: { n: number } }) => outputs.push(d.output.n));

      let sentUp = 0;
      let sentDown = 0;
      const answers = new Map<number, string[]>();
      const failures: unknown[] = [];
      let cuts = 0;
      let steps = 0;
      while (cuts < cutsWanted) {
        steps++;
        const r = rand();
        if (r < 0.3) {
          const n = ++sentUp;
          slave.sendEvent('instance_output_event', { instance_id: 1, output: { n } });
        } else if (r < 0.6) {
          const j = ++sentDown;
          control.request('send_rcon_request', { instance_id: 1, command: String(j) }).then(
            (res) => answers.set(j, [...(answers.get(j) ?? []), res.result]),
            (err: unknown) => failures.push(err),
          );
        } else if (r < 0.8) {
          const target = rand() < 0.5 ? slave : control;
          const serverSide = rand() < 0.5;
          const ws = target.socket;
          if (ws && ws.readyState === ws.OPEN) {
            cuts++;
            if (serverSide) {
              const conn = h.srv.muster.transport.connections().find((c) => c.socket.readyState === c.socket.OPEN && c.identity?.startsWith(target === slave ? 'slave' : 'control'));
              if (conn) conn.terminate();
              else ws.terminate();
            } else {
              ws.terminate();
            }
          } else {
            await new Promise((res) => setTimeout(res, 1));
          }
        } else if (r < 0.95) {
          await tick();
        } else {
          await new Promise((res) => setTimeout(res, 1));
        }
      }
      await until(() => outputs.length >= sentUp && answers.size + failures.length >= sentDown, 15_000);
      await serverRoundTrip(h.srv.muster); // anything still on its way to a client has arrived
      expect(failures).toEqual([]);
      expect(outputs).toEqual(Array.from({ length: sentUp }, (_, i) => i + 1));
      expect(commands).toEqual(Array.from({ length: sentDown }, (_, i) => i + 1));
      for (let j = 1; j <= sentDown; j++) expect(answers.get(j)).toEqual([`r${j}`]);
      expect(steps).toBeGreaterThan(cutsWanted);
    }, 60_000);
  }

  it('rejects every pending request with a typed error when the session is invalidated (random trials)', async () => {
    const rand = prng(99);
    const slave = await Seed2020.connect(h.srv, 'slave', { id: 4242 });
    seeds.push(slave);
    const timers: LinkTimers & { fire(): void } = (() => {
      const due = new Map<number, { fn: () => void; ms: number }>();
      let n = 0;
      return {
        setTimeout: (fn: () => void, ms: number) => {
          due.set(++n, { fn, ms });
          return n;
        },
        clearTimeout: (h: unknown) => void due.delete(h as number),
        fire: () => {
          for (const [id, t] of [...due]) {
            if (t.ms >= 1000) continue;
            due.delete(id);
            t.fn();
          }
        },
      };
    })();
    const control = await makeLink('control', { timers, reconnect: { minMs: 1, maxMs: 2 } });
    await control.request('create_instance_request', { serialized_config: instanceConfig(1, 'p', 4242) as never });
    for (let trial = 0; trial < 8; trial++) {
      const k = 1 + Math.floor(rand() * 12);
      const outcomes: Array<'resolved' | ClusterioLinkError | unknown> = [];
      const all = Array.from({ length: k }, (_, i) =>
        (rand() < 0.5 || i === 0
          ? control.request('start_instance_request', { instance_id: 1 })
          : control.request('send_rcon_request', { instance_id: 1, command: 'x' })
        ).then(
            () => outcomes.push('resolved'),
            (e: unknown) => outcomes.push(e),
          ),
      );
      for (let i = 0; i < k; i++) await slave.next(); // the slave got them, and never answers
      const conn = h.srv.muster.transport.connections().find((c) => c.identity?.startsWith('control'));
      conn?.terminate();
      await until(() => control.state === 'resuming');
      await until(() => dialectOf(h.srv).summary().connections === 1);
      // The session expires while the link is away (in steps, so the seed slave answers its pings).
      for (let t = 0; t < 6; t++) {
        h.srv.clock.advance(10_000);
        await serverRoundTrip(h.srv.muster);
      }
      timers.fire();
      await Promise.all(all);
      expect(outcomes).toHaveLength(k);
      for (const o of outcomes) {
        expect(o).toBeInstanceOf(ClusterioLinkError);
        expect((o as ClusterioLinkError).code).toBe('SESSION_INVALIDATED');
      }
      await until(() => control.state === 'connected');
      // The server's own requests to the slave are still open; the slave's late answers are not for anyone.
      expect(control.pendingRequests).toBe(0);
    }
  }, 60_000);
});
