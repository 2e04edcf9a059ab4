import WebSocket from 'ws';
import { BusClient, ClusterioLink, DiscodoClient, GameServerClient, ShardingControl } from '../../src/client/index.js';
import { mintToken } from '../../src/dialects/clusterio/token.js';

/**
 * One peer of every dialect, connected with the project's own clients, for tests that
 * need a whole fleet talking to a server (the logging tests). The secrets are distinct
 * strings, so a test can look for each of them in the log.
 */
export const FLEET_SECRETS = {
  admin: 'ADMINsecret-7f3a9c2e1d',
  shardingKey: 'SHARDkey-1b2c3d4e5f',
  botToken: 'BOTtoken-9z8y7x6w5v',
  clusterio: 'CLUSTERIOjwt-5e6f7a8b9c',
  bus: 'BUStoken-2a3b4c5d6e',
  discodo: 'DISCODOpw-6c7d8e9f0a',
  gamelist: 'GAMELISTtok-0a1b2c3d4e',
  rcon: 'RCONpw-4d5e6f7a8b',
  gamePassword: 'GAMEpw-8b9c0d1e2f',
} as const;

/** The config sections that enable every dialect with FLEET_SECRETS. */
export function fleetConfig(): Record<string, unknown> {
  const s = FLEET_SECRETS;
  return {
    admin: { token: s.admin },
    dialects: {
      sharding: { enabled: true, authorization: s.shardingKey, botToken: s.botToken, shardCount: 4 },
      clusterio: { enabled: true, authSecret: s.clusterio },
      bus: { enabled: true, token: s.bus },
      discodo: { enabled: true, password: s.discodo },
      gamelist: { enabled: true, regTokens: [s.gamelist] },
    },
  };
}

export interface Fleet {
  bus: BusClient;
  busPeer: BusClient;
  sharding: ShardingControl;
  slave: ClusterioLink;
  control: ClusterioLink;
  discodo: DiscodoClient;
  gameServer: GameServerClient;
  /** The minted Clusterio tokens (secrets too). */
  tokens: string[];
  /** One request per dialect that answers, proving every peer is still served. */
  exercise(): Promise<void>;
  close(): Promise<void>;
}

let instanceIds = 100;

/** Connects and identifies one peer of every dialect (two on the bus). */
export async function connectFleet(wsBase: string, opts: { userId?: string } = {}): Promise<Fleet> {
  const s = FLEET_SECRETS;
  const noReconnect = false as const;
  const bus = new BusClient({ url: `${wsBase}/bus`, token: s.bus, name: 'log-bus-a', reconnect: noReconnect });
  const busPeer = new BusClient({ url: `${wsBase}/bus`, token: s.bus, name: 'log-bus-b', reconnect: noReconnect });
  await bus.connect();
  await busPeer.connect();
  busPeer.on('event', (m) => busPeer.reply(m, 'pong'));

  const sharding = new ShardingControl({
    url: `${wsBase}/sharding`,
    authorization: s.shardingKey,
    name: 'log-control',
    reconnect: false,
    start: () => undefined,
    stop: () => undefined,
  });
  sharding.on('error', () => undefined);
  await sharding.connect();

  const slaveToken = await mintToken(s.clusterio, { aud: 'slave', id: '4242' });
  const controlToken = await mintToken(s.clusterio, { aud: 'control' });
  const slave = new ClusterioLink({ url: `${wsBase}/api/socket`, role: 'slave', token: slaveToken, id: 4242, name: 'log-slave', reconnect: noReconnect });
  const control = new ClusterioLink({ url: `${wsBase}/api/socket`, role: 'control', token: controlToken, reconnect: noReconnect });
  slave.on('error', () => undefined);
  control.on('error', () => undefined);
  await slave.connect();
  await control.connect();
  const id = instanceIds++;
  await control.request('create_instance_request', {
    serialized_config: {
      groups: [
        { name: 'instance', fields: { name: `log-inst-${id}`, id, assigned_slave: null } },
        { name: 'factorio', fields: { game_port: null, rcon_port: 27015, rcon_password: s.rcon, settings: { tags: [] } } },
      ],
    } as never,
  });
  await control.request('set_instance_config_field_request', { instance_id: id, field: 'factorio.rcon_password', value: s.rcon });

  const discodo = new DiscodoClient({ url: `${wsBase}/ws`, password: s.discodo, userId: opts.userId ?? '123456789012345678', reconnect: false });
  discodo.on('error', () => undefined);
  await discodo.connect();

  const gameServer = new GameServerClient({
    url: `${wsBase}/v2/server/ws`,
    regToken: s.gamelist,
    info: { name: 'log-gs', desc: 'a game server', port: 37015, map: 'm', playlist: 'p', curPlayers: 0, maxPlayers: 8, password: s.gamePassword, gameState: 0 },
    reconnect: noReconnect,
  });
  gameServer.on('error', () => undefined);
  await gameServer.connect();

  return {
    bus,
    busPeer,
    sharding,
    slave,
    control,
    discodo,
    gameServer,
    tokens: [slaveToken, controlToken],
    async exercise() {
      await bus.request(busPeer.id as string, 'PING?');
      await control.request('list_instances_request', {});
      await discodo.getStatus();
      await gameServer.update({ curPlayers: 1 });
      sharding.sendInfo({});
    },
    async close() {
      for (const c of [bus, busPeer, sharding, slave, control, discodo, gameServer]) await c.close().catch(() => undefined);
    },
  };
}

/**
 * Attempts that must fail, each carrying a secret wrongly (a near miss, the wrong
 * dialect's secret, the secret in the wrong place). Resolves once every one was refused.
 */
export async function failedLogins(wsBase: string, httpBase: string): Promise<void> {
  const s = FLEET_SECRETS;
  const refused = (url: string, headers: Record<string, string>, frames: string[] = []): Promise<void> =>
    new Promise((resolve) => {
      const ws = new WebSocket(url, { headers });
      ws.on('open', () => {
        for (const f of frames) ws.send(f);
      });
      ws.on('unexpected-response', (req) => {
        req.destroy();
        resolve();
      });
      ws.on('error', () => resolve());
      ws.on('close', () => resolve());
    });
  await refused(`${wsBase}/sharding`, { authorization: `${s.shardingKey}x` });
  await refused(`${wsBase}/sharding`, { authorization: s.bus });
  await refused(`${wsBase}/bus`, {}, [JSON.stringify({ op: 1, data: { token: `${s.bus}x`, name: s.bus } })]);
  await refused(`${wsBase}/bus`, { authorization: `Bearer ${s.admin}x` }, [JSON.stringify({ op: 1, data: {} })]);
  await refused(`${wsBase}/ws`, { authorization: `${s.discodo}x` }, [JSON.stringify({ op: 'IDENTIFY', d: { user_id: 1, shard_id: null } })]);
  const badJwt = await mintToken(`${s.clusterio}x`, { aud: 'control' });
  await refused(`${wsBase}/api/socket`, {}, [
    JSON.stringify({ seq: 1, type: 'register_control', data: { token: badJwt, agent: 'x', version: '1.0.0' } }),
  ]);
  await refused(`${wsBase}/api/socket`, {}, [
    JSON.stringify({ seq: 1, type: 'register_control', data: { token: s.clusterio, agent: 'x', version: '1.0.0' } }),
  ]);
  const gs = new GameServerClient({
    url: `${wsBase}/v2/server/ws`,
    regToken: `${s.gamelist}x`,
    info: { name: 'bad-gs', desc: '', port: 37016, map: 'm', playlist: 'p', curPlayers: 0, maxPlayers: 8, password: s.gamePassword, gameState: 0 },
    reconnect: false,
  });
  gs.on('error', () => undefined);
  await gs.connect().catch(() => undefined);
  await gs.close().catch(() => undefined);
  await fetch(`${httpBase}/api/v1/status`, { headers: { authorization: `Bearer ${s.admin}x` } });
  await fetch(`${httpBase}/api/v1/status`, { headers: { authorization: `Bearer ${s.bus}` } });
}
