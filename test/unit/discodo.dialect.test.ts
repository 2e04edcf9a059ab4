import type { IncomingMessage } from 'node:http';
import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { LocalBroker } from '../../src/cluster/broker.js';
import { ManualClock } from '../../src/core/clock.js';
import { Connection } from '../../src/core/connection.js';
import type { ConnectionHandler, DialectContext } from '../../src/core/dialect.js';
import { Scheduler } from '../../src/core/scheduler.js';
import type { VoiceBackend } from '../../src/dialects/discodo/backend.js';
import { DiscodoDialect, type DiscodoDialectConfig } from '../../src/dialects/discodo/dialect.js';
import { snowflakeKey } from '../../src/protocols/discodo/messages.js';
import type { Store } from '../../src/store/types.js';
import { nodeStatusProvider } from '../../src/dialects/discodo/status.js';

/**
 * The runtime with no sockets: fake `ws` objects under real Connections, a manual
 * clock, and a recording VoiceBackend.
 */

class FakeWs {
  sent: string[] = [];
  closed: { code: number; reason: string } | undefined;
  bufferedAmount = 0;
  readyState = 1;
  send(d: unknown): void {
    this.sent.push(String(d));
  }
  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
  }
  terminate(): void {
    this.closed ??= { code: 1006, reason: '' };
  }
  ping(): void {}
}

interface Peer {
  ws: FakeWs;
  conn: Connection;
  h: ConnectionHandler;
  send(text: string): void;
  /** Frames received so far, parsed. */
  frames(): Array<{ op: string; d: unknown }>;
  drop(code?: number): void;
}

function setup(over: Partial<DiscodoDialectConfig> = {}, backend?: VoiceBackend) {
  const clock = new ManualClock(1_000_000);
  const scheduler = new Scheduler(clock, (e) => {
    throw e;
  });
  const ctx: DialectContext = {
    scheduler,
    store: {} as Store,
    broker: new LocalBroker(),
    logger: pino({ level: 'silent' }),
    registry: new Registry(),
  };
  let ids = 0;
  const dialect = new DiscodoDialect(
    { path: '/ws', password: 'pw', heartbeatInterval: 15_000, vcTimeout: 300_000, handshakeTimeout: 60_000, compat: 'seed', ...over },
    ctx,
    {
      secretEquals: (a, b) => a === b,
      newId: () => `vc-${++ids}`,
      status: () => ({ UsedMemory: 1, load: { avg1: 0.5 } }),
      ...(backend ? { backend } : {}),
    },
  );
  let n = 0;
  const connect = (password = 'pw'): Peer => {
    const ws = new FakeWs();
    const conn = new Connection(ws as unknown as WebSocket, { id: `c${++n}`, dialect: 'discodo', remoteAddress: '10.0.0.1', scheduler, maxBufferedBytes: 1 << 20 });
    const h = dialect.accept(conn, { headers: { authorization: password } } as unknown as IncomingMessage);
    return {
      ws,
      conn,
      h,
      send: (text) => h.onMessage(Buffer.from(text), false),
      frames: () => ws.sent.map((t) => JSON.parse(t) as { op: string; d: unknown }),
      drop: (code = 1000) => {
        conn._closed(code, '');
        h.onClose(code, '');
      },
    };
  };
  return { clock, scheduler, dialect, connect, registry: ctx.registry };
}

function recorder(): { backend: VoiceBackend; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    backend: {
      connect: (vc, s) => calls.push(`connect ${s.key} ${snowflakeKey(vc.guildId)} ${vc.id} ${vc.server.endpoint ?? ''}`),
      update: (vc, s) => calls.push(`update ${s.key} ${snowflakeKey(vc.guildId)} ${snowflakeKey(vc.channelId)} ${vc.server.endpoint ?? ''}`),
      disconnect: (vc, s, reason) => calls.push(`disconnect ${s.key} ${snowflakeKey(vc.guildId)} ${reason}`),
    },
  };
}

const IDENTIFY = '{"op":"IDENTIFY","d":{"user_id":870000000000000123,"shard_id":1}}';
const state = (g: string, c: string): string =>
  `{"op":"DISCORD_EVENT","d":{"t":"VOICE_STATE_UPDATE","d":{"guild_id":${g},"channel_id":${c},"user_id":870000000000000123,"session_id":"s"}}}`;
const server = (g: string, e = 'e1'): string => `{"op":"DISCORD_EVENT","d":{"t":"VOICE_SERVER_UPDATE","d":{"guild_id":${g},"token":"t","endpoint":"${e}"}}}`;

describe('discodo runtime: VoiceBackend', () => {
  it('is told of every voice client: connect, update, disconnect with the reason', () => {
    const { backend, calls } = recorder();
    const { connect, clock, dialect } = setup({}, backend);
    const p = connect();
    p.send(IDENTIFY);
    p.send(state('1', '10'));
    p.send(server('1'));
    p.send(server('1', 'e2'));
    p.send(state('1', '11'));
    p.send(state('1', 'null'));
    p.send(state('2', '20'));
    p.send(server('2'));
    p.send('{"op":"VC_DESTROY","d":{"guild_id":2}}');
    p.send(state('3', '30'));
    p.send(server('3'));
    p.drop();
    clock.advance(300_000);
    p.send(IDENTIFY);
    const q = connect();
    q.send(IDENTIFY);
    q.send(state('4', '40'));
    q.send(server('4'));
    dialect.stop();
    const key = '870000000000000123-1';
    expect(calls).toEqual([
      `connect ${key} 1 vc-1 e1`,
      `update ${key} 1 10 e2`,
      `update ${key} 1 11 e2`,
      `disconnect ${key} 1 left`,
      `connect ${key} 2 vc-2 e1`,
      `disconnect ${key} 2 requested`,
      `connect ${key} 3 vc-3 e1`,
      `disconnect ${key} 3 expired`,
      `connect ${key} 4 vc-4 e1`,
      `disconnect ${key} 4 shutdown`,
    ]);
    expect(dialect.summary()).toMatchObject({ sessions: 0, voiceClients: 0 });
  });

  it('a backend that throws does not stop the session layer', () => {
    const { connect, dialect } = setup({}, {
      connect: () => {
        throw new Error('boom');
      },
      update: () => undefined,
      disconnect: () => undefined,
    });
    const p = connect();
    p.send(IDENTIFY);
    p.send(state('1', '10'));
    p.send(server('1'));
    expect(p.frames().map((f) => f.op)).toEqual(['HELLO', 'IDENTIFIED', 'VC_CREATED']);
    expect(dialect.summary().voiceClients).toBe(1);
  });
});

describe('discodo runtime: timers', () => {
  it('keeps a dropped session exactly vcTimeout', () => {
    const { connect, clock, dialect, scheduler } = setup({ vcTimeout: 1000 });
    const p = connect();
    p.send(IDENTIFY);
    p.send(state('1', '10'));
    p.send(server('1'));
    p.drop();
    expect(dialect.summary()).toMatchObject({ detachedSessions: 1, voiceClients: 1 });
    clock.advance(999);
    expect(dialect.summary()).toMatchObject({ detachedSessions: 1, voiceClients: 1 });
    clock.advance(1);
    expect(dialect.summary()).toMatchObject({ sessions: 0, voiceClients: 0 });
    expect(scheduler.size).toBe(0);
  });

  it('closes 4000 after handshakeTimeout of silence, with one timer per connection', () => {
    const { connect, clock, scheduler } = setup();
    const p = connect();
    expect(scheduler.size).toBe(1);
    clock.advance(30_000);
    p.send('{"op":"HEARTBEAT","d":1}');
    clock.advance(59_999);
    expect(p.ws.closed).toBeUndefined();
    expect(scheduler.size).toBe(1);
    clock.advance(1);
    expect(p.ws.closed).toEqual({ code: 4000, reason: expect.any(String) });
    p.drop(4000);
    expect(scheduler.size).toBe(0);
  });

  it('arms no timer for a refused socket', () => {
    const { connect, scheduler } = setup();
    const p = connect('bad');
    expect(p.frames()).toEqual([{ op: 'FORBIDDEN', d: 'Password mismatch.' }]);
    expect(p.ws.closed?.code).toBe(4003);
    p.drop(4003);
    expect(scheduler.size).toBe(0);
  });
});

describe('discodo runtime: sessions', () => {
  it('takeover: the old socket is closed 4005 and its later close leaves the session with the new one', () => {
    const { connect, dialect } = setup();
    const a = connect();
    a.send(IDENTIFY);
    a.send(state('1', '10'));
    a.send(server('1'));
    const b = connect();
    b.send(IDENTIFY);
    expect(a.ws.closed).toEqual({ code: 4005, reason: expect.any(String) });
    expect(b.frames().slice(1).map((f) => f.op)).toEqual(['IDENTIFIED', 'RESUMED']);
    // Frames the old socket still had in flight do nothing.
    a.send(state('1', 'null'));
    a.drop(4005);
    expect(dialect.summary()).toMatchObject({ liveSessions: 1, detachedSessions: 0, voiceClients: 1, connections: 1 });
    expect(b.frames().at(-1)).toEqual({ op: 'RESUMED', d: { voice_clients: [[1, 10]] } });
  });

  it('uses the configured compat form', () => {
    const { connect } = setup({ compat: 'discodo-3' });
    const a = connect();
    a.send(IDENTIFY);
    a.send(state('"1"', '"10"'));
    a.send(server('"1"'));
    a.drop();
    const b = connect();
    b.send(IDENTIFY);
    expect(b.ws.sent.at(-1)).toBe('{"op":"RESUMED","d":{"voice_clients":{"1":{"id":"vc-1","channel":"10"}}}}');
  });

  it('reloads the password for new connections; existing ones stay', () => {
    const { connect, dialect } = setup();
    const a = connect();
    a.send(IDENTIFY);
    dialect.reloadSecrets({ password: 'new' });
    expect(connect('pw').ws.closed?.code).toBe(4003);
    expect(connect('new').ws.closed).toBeUndefined();
    expect(a.ws.closed).toBeUndefined();
  });

  it('STATUS merges the status provider with counts', () => {
    const { connect } = setup();
    const a = connect();
    a.send(IDENTIFY);
    a.send('{"op":"GET_STATUS","d":null}');
    expect(a.frames().at(-1)).toEqual({
      op: 'STATUS',
      d: { UsedMemory: 1, load: { avg1: 0.5 }, connections: 1, sessions: 1, live_sessions: 1, detached_sessions: 0, voice_clients: 0 },
    });
  });

  it('cuts a slow consumer with 4008', () => {
    const { connect } = setup();
    const a = connect();
    a.ws.bufferedAmount = 2 << 20;
    a.send('{"op":"HEARTBEAT","d":1}');
    expect(a.ws.closed?.code).toBe(4008);
  });

  it('kick closes 1008 and goodbye closes 1001', () => {
    const { connect, dialect } = setup();
    const a = connect();
    const b = connect();
    dialect.kick(a.conn);
    dialect.goodbye(b.conn);
    expect(a.ws.closed?.code).toBe(1008);
    expect(b.ws.closed?.code).toBe(1001);
  });
});

describe('discodo STATUS figures', () => {
  it('caps TotalLoad at 100 (a percentage, as Discodo 3 sends) and shows the uncapped figure in load.total_percent', () => {
    const loaded = nodeStatusProvider({ loadavg: () => [5, 4, 3], cores: () => 2 })();
    expect(loaded).toMatchObject({ TotalLoad: 100, Cores: 2, load: { avg1: 5, avg5: 4, avg15: 3, total_percent: 250 } });
    const idle = nodeStatusProvider({ loadavg: () => [0.25, 0, 0], cores: () => 2 })();
    expect(idle).toMatchObject({ TotalLoad: 12.5, load: { total_percent: 12.5 } });
  });
});
