import { describe, expect, it } from 'vitest';
import { instanceConfig, Seed2020, ClusterioHarness, serverPerTest } from '../support/harness/clusterio.js';

/**
 * Forwarded requests are keyed by the slave they went to and the master's own seq, never
 * by the seq a control chose: two controls using the same seq at once, or a slave
 * answering another slave's request, cannot cross answers.
 */

const h = new ClusterioHarness();
const seeds = serverPerTest(h);

async function connect(role: 'slave' | 'control', id?: number): Promise<Seed2020> {
  const s = await Seed2020.connect(h.srv, role, id === undefined ? {} : { id, name: `slave-${id}` });
  seeds.push(s);
  return s;
}

describe('clusterio: forwarded requests from two controls with the same seq', () => {
  it('each control gets its own answer, whatever order the slave answers in', async () => {
    const s = await connect('slave', 4242);
    s.send('update_instances_event', { instances: [] });
    const c1 = await connect('control');
    const c2 = await connect('control');
    await c1.request('create_instance_request', { serialized_config: instanceConfig(777) }); // seq 2
    const a = c1.send('assign_instance_command_request', { instance_id: 777, slave_id: 4242 }); // seq 3
    const assign = await s.next();
    s.send('assign_instance_response', { seq: assign.seq });
    expect((await c1.next()).data).toEqual({ seq: a });
    await c2.request('list_slaves_request'); // seq 2
    await c2.request('list_slaves_request'); // seq 3
    const rcon = (command: string): Record<string, unknown> => ({ instance_id: 777, command });
    const seq1 = c1.send('send_rcon_request', rcon('/one'));
    const seq2 = c2.send('send_rcon_request', rcon('/two'));
    expect(seq1).toBe(seq2);
    const f1 = await s.next();
    const f2 = await s.next();
    expect([f1.data.command, f2.data.command]).toEqual(['/one', '/two']);
    expect(f1.seq).not.toBe(f2.seq);
    // The slave answers the second first.
    s.send('send_rcon_response', { seq: f2.seq, result: 'two' });
    s.send('send_rcon_response', { seq: f1.seq, result: 'one' });
    expect((await c2.next()).data).toEqual({ seq: seq2, result: 'two' });
    expect((await c1.next()).data).toEqual({ seq: seq1, result: 'one' });
  });

  it("a slave cannot answer a request the master sent another slave", async () => {
    const s = await connect('slave', 4242);
    s.send('update_instances_event', { instances: [] });
    const other = await connect('slave', 5151);
    const c = await connect('control');
    await c.request('create_instance_request', { serialized_config: instanceConfig(777) });
    c.send('assign_instance_command_request', { instance_id: 777, slave_id: 4242 });
    const assign = await s.next();
    s.send('assign_instance_response', { seq: assign.seq });
    await c.next();
    const seq = c.send('send_rcon_request', { instance_id: 777, command: '/x' });
    const f = await s.next();
    // The other slave guesses the master's seq and answers first: not its request.
    other.peer.send({ seq: 99, type: 'send_rcon_response', data: { seq: f.seq, result: 'forged' } });
    expect((await other.peer.waitClose()).code).toBe(4000); // a protocol violation closes it
    s.send('send_rcon_response', { seq: f.seq, result: 'real' });
    expect((await c.next()).data).toEqual({ seq, result: 'real' });
  });
});
