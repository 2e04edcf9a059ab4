import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClusterioLink, ClusterioLinkError, type LinkTimers } from '../../src/client/clusterio.js';
import { serverRoundTrip, until } from '../support/server.js';
import { controlToken, dialectOf, instanceConfig, Seed2020, slaveToken, ClusterioHarness } from '../support/harness/clusterio.js';

const h = new ClusterioHarness();
const links: ClusterioLink[] = [];
const seeds: Seed2020[] = [];

/** Timers the test fires by hand. */
class ManualTimers implements LinkTimers {
  #next = 0;
  readonly #due = new Map<number, { fn: () => void; ms: number }>();
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#next;
    this.#due.set(id, { fn, ms });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.#due.delete(h as number);
  }
  /** Runs the timers set for less than `ms` (reconnect backoffs, not heartbeats or request deadlines). */
  fireBelow(ms: number): number {
    let n = 0;
    for (const [id, t] of [...this.#due]) {
      if (t.ms < ms) {
        this.#due.delete(id);
        t.fn();
        n++;
      }
    }
    return n;
  }
}

async function link(role: 'slave' | 'control', extra: Partial<ConstructorParameters<typeof ClusterioLink>[0]> = {}): Promise<ClusterioLink> {
  const l = new ClusterioLink({
    url: h.url,
    role,
    token: role === 'slave' ? await slaveToken(4242) : await controlToken(),
    ...(role === 'slave' ? { id: 4242, name: 'link-slave' } : {}),
    reconnect: { minMs: 5, maxMs: 20 },
    ...extra,
  });
  links.push(l);
  await l.connect();
  return l;
}

/** The server-side connection of a registered peer, to cut it. */
function connOf(identity: RegExp): { terminate(): void } {
  const c = h.srv.muster.transport.connections().find((x) => identity.test(x.identity ?? ''));
  if (!c) throw new Error(`no connection ${identity}`);
  return c;
}

async function advance(ms: number): Promise<void> {
  for (let left = ms; left > 0; left -= 10_000) {
    h.srv.clock.advance(Math.min(10_000, left));
    await serverRoundTrip(h.srv.muster);
  }
}

beforeEach(async () => {
  await h.start();
});

afterEach(async () => {
  for (const l of links.splice(0)) await l.close();
  for (const s of seeds.splice(0)) {
    expect(s.violations).toEqual([]);
    s.close();
  }
  await h.teardown(async (srv) => {
    // A link closed while its socket was down leaves a detached session: it expires.
    srv.clock.advance(60_000);
    await until(() => dialectOf(srv).summary().sessions === 0);
    const sum = dialectOf(srv).summary();
    expect([sum.connections, sum.slaves, sum.controls, sum.sessions, sum.pendingRequests]).toEqual([0, 0, 0, 0, 0]);
  });
});

describe('ClusterioLink', () => {
  it('a slave and a control: create, assign, start, and instance output reaches the subscribed control', async () => {
    const slave = await link('slave');
    const got: string[] = [];
    slave.handle('assign_instance_request', (data) => {
      got.push(`assign ${data.instance_id}`);
      return {};
    });
    slave.handle('start_instance_request', (data) => {
      got.push(`start ${data.instance_id}`);
      slave.sendEvent('instance_output_event', { instance_id: data.instance_id, output: { source: 'stdout', received: 1, format: 'seconds', type: 'log', message: 'started' } });
      return {};
    });
    slave.sendEvent('update_instances_event', { instances: [] });

    const control = await link('control');
    const outputs: unknown[] = [];
    control.on('instance_output_event', (data: unknown) => outputs.push(data));
    await control.request('create_instance_request', { serialized_config: instanceConfig(777) as never });
    await control.request('set_instance_output_subscriptions_request', { instance_ids: [777] });
    await control.request('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
    await control.request('start_instance_request', { instance_id: 777 });
    expect(got).toEqual(['assign 777', 'start 777']);
    await until(() => outputs.length === 1);
    expect(outputs[0]).toEqual({ instance_id: 777, output: expect.objectContaining({ message: 'started' }) });
    const list = await control.request('list_instances_request', {});
    expect(list).toEqual({ list: [{ name: 'test-inst', id: 777, assigned_slave: 4242 }] });
  });

  it('rejects an error response with ClusterioLinkError REMOTE', async () => {
    const control = await link('control');
    const err = await control.request('start_instance_request', { instance_id: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ClusterioLinkError);
    expect(err).toMatchObject({ code: 'REMOTE', message: 'Instance with ID 1 does not exist', retryable: false });
  });

  it('a slave without a handler answers "No handler for <type>"', async () => {
    await link('slave');
    const control = await link('control');
    await control.request('create_instance_request', { serialized_config: instanceConfig(5, 'x', 4242) as never });
    await expect(control.request('stop_instance_request', { instance_id: 5 })).rejects.toMatchObject({ message: 'No handler for stop_instance_request' });
  });

  it('resumes after a dropped socket: a request made while down is delivered once and answered', async () => {
    const slave = await link('slave');
    let starts = 0;
    slave.handle('start_instance_request', () => {
      starts++;
      return {};
    });
    const control = await link('control');
    await control.request('create_instance_request', { serialized_config: instanceConfig(9, 'x', 4242) as never });
    let back = false;
    const resumed = new Promise((r) => slave.once('resume', r)).then(() => (back = true));
    connOf(/^slave 4242/).terminate();
    // Down (or already back, on a fast reconnect): the request below is made after the drop.
    await until(() => back || slave.state === 'resuming' || dialectOf(h.srv).summary().connections === 1, 10_000);
    const answer = control.request('start_instance_request', { instance_id: 9 });
    await resumed;
    await answer;
    expect(starts).toBe(1);
    const m = await (await fetch(`${h.srv.httpBase}/metrics`)).text().catch(() => '');
    expect(m).toMatch(/muster_clusterio_resumes_total [1-9]/);
  });

  it('rejects pending requests with SESSION_INVALIDATED when the session expired, then registers anew', async () => {
    const slave = await Seed2020.connect(h.srv, 'slave', { id: 4242 });
    seeds.push(slave);
    const timers = new ManualTimers();
    const control = await link('control', { timers, reconnect: { minMs: 1, maxMs: 2 } });
    await control.request('create_instance_request', { serialized_config: instanceConfig(9, 'x', 4242) as never });
    const pending = control.request('start_instance_request', { instance_id: 9 });
    expect((await slave.next()).type).toBe('start_instance_request');
    const events: string[] = [];
    for (const e of ['drop', 'invalidate', 'ready']) control.on(e, () => events.push(e));
    connOf(/^control/).terminate();
    await until(() => control.state === 'resuming');
    await until(() => dialectOf(h.srv).summary().connections === 1);
    await advance(60_000);
    expect(dialectOf(h.srv).summary().sessions).toBe(0);
    expect(timers.fireBelow(1000)).toBe(1);
    const err = await pending.catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'ClusterioLinkError', code: 'SESSION_INVALIDATED', retryable: true });
    await until(() => control.state === 'connected');
    expect(events).toEqual(['drop', 'invalidate', 'ready']);
    expect(await control.request('list_slaves_request', {})).toEqual({ list: [expect.objectContaining({ id: 4242, connected: true })] });
  });

  it('a refused token rejects connect() and does not reconnect', async () => {
    const l = new ClusterioLink({ url: h.url, role: 'control', token: 'bad', reconnect: { minMs: 1, maxMs: 2 } });
    links.push(l);
    const closed = new Promise<[number, string]>((r) => l.once('close', (code: number, reason: string) => r([code, reason])));
    await expect(l.connect()).rejects.toMatchObject({ code: 'CLOSED' });
    expect(await closed).toEqual([4003, 'Authentication failed']);
    expect(l.state).toBe('closed');
  });

  it('heartbeats: the link answers the server and acknowledges what it received', async () => {
    const timers = new ManualTimers();
    const control = await link('control', { timers });
    await control.request('list_slaves_request', {});
    expect(control.unacknowledged).toBe(1);
    h.srv.clock.advance(15_000); // the server's heartbeat acknowledges the request
    await until(() => control.unacknowledged === 0);
    expect(timers.fireBelow(20_000)).toBe(1); // the link's own heartbeat
    await serverRoundTrip(h.srv.muster); // the heartbeat the link just sent has been handled
    h.srv.clock.advance(15_000);
    await serverRoundTrip(h.srv.muster);
    expect(control.state).toBe('connected');
    // Without the link's heartbeat, the server would have closed it at 30 s.
    h.srv.clock.advance(15_000);
    await until(() => control.state === 'resuming' || control.state === 'connecting');
  });

  it('sends an event with numbers beyond 2^53 exactly, as JSON text', async () => {
    const slave = await link('slave');
    const control = await link('control');
    const raws: string[] = [];
    control.on('instance_output_event', (_d: unknown, raw: string) => raws.push(raw));
    await control.request('set_instance_output_subscriptions_request', { instance_ids: [7] });
    slave.sendEvent('instance_output_event', '{"instance_id":7,"output":{"id":870000000000000123}}');
    await until(() => raws.length === 1);
    expect(raws[0]).toContain('"output":{"id":870000000000000123}');
  });
});
