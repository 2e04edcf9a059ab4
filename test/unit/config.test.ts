import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  constantTimeEqual,
  defaultConfig,
  loadConfig,
  parseBytes,
  parseDuration,
  resolveSecrets,
  type MusterConfig,
  type MusterConfigInput,
} from '../../src/config/index.js';
import { MusterConfigSchema } from '../../src/config/schema.js';
import { configError } from '../support/config-error.js';

let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-cfg-'));
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function write(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}


function withOverrides(overrides: unknown): MusterConfig {
  return loadConfig({ env: {}, overrides: overrides as MusterConfigInput });
}

const EXPECTED_DEFAULTS: MusterConfig = {
  listen: { host: '127.0.0.1', port: 7373 },
  dataDir: './muster-data',
  store: { kind: 'sqlite', prefix: 'muster:' },
  cluster: { prefix: 'muster:', presenceTtl: 15000, leaseTtl: 6000, gatherTimeout: 1000 },
  admin: { failedAuthPerIpPerMinute: 10 },
  limits: { maxPayload: 1048576, maxConnections: 50000, handshakesPerIpPerMinute: 600 },
  http: { headersTimeout: 10000, requestTimeout: 30000, keepAliveTimeout: 5000 },
  log: { level: 'info', maxBufferedBytes: 4194304 },
  dialects: {
    sharding: {
      enabled: true,
      path: '/sharding',
      shardCount: 16,
      maxConcurrency: 1,
      heartbeatInterval: 30000,
      heartbeatGrace: 15000,
      reconnectWindow: 30000,
      startupDelay: 45000,
      expectedControls: 0,
      redundancy: 0,
      startup: 'sequential',
      connectTimeout: 120000,
      identifyWindow: 5000,
      identifyMargin: 250,
      sessionStartLimit: 1000,
      fenceMargin: 5000,
      identifyTimeout: 10000,
    },
    clusterio: { enabled: true, path: '/api/socket', heartbeatInterval: 15000, sessionTimeout: 60000, preAuthMaxBytes: 16384 },
    bus: {
      enabled: true,
      path: '/bus',
      heartbeatInterval: 30000,
      maxMessageBytes: 32768,
      requestTimeout: 10000,
      identifyTimeout: 10000,
      maxBufferedBytes: 4194304,
      maxEventsPerSecond: 1000,
      maxEventBytesPerSecond: 1048576,
      preAuthMaxBytes: 16384,
    },
    discodo: {
      enabled: true,
      path: '/ws',
      heartbeatInterval: 15000,
      vcTimeout: 300000,
      handshakeTimeout: 60000,
      compat: 'seed',
      claimTimeout: 2000,
    },
    gamelist: {
      enabled: true,
      path: '/v2/server/ws',
      registrationTtl: 30000,
      pingInterval: 10000,
      pongTimeout: 20000,
      joinTimeout: 5000,
      maxServers: 10000,
      maxServersPerIp: 25,
      maxFailedRegistrations: 5,
      publicRatePerIpPerMinute: 1200,
      preAuthMaxBytes: 16384,
    },
  },
  shutdownTimeout: 10000,
};

describe('defaults', () => {
  it('equal the ones of operations.md', () => {
    expect(loadConfig({ env: {} })).toStrictEqual(EXPECTED_DEFAULTS);
    expect(defaultConfig()).toStrictEqual(EXPECTED_DEFAULTS);
  });

  it('fill the keys a partial file leaves out', () => {
    const file = write('partial.yaml', 'dialects:\n  bus:\n    heartbeatInterval: 5s\n');
    const config = loadConfig({ file, env: {} });
    expect(config.dialects.bus.heartbeatInterval).toBe(5000);
    expect(config.dialects.bus.requestTimeout).toBe(10000);
    expect(config.dialects.sharding).toStrictEqual(EXPECTED_DEFAULTS.dialects.sharding);
  });

  it('treat an empty file as all defaults', () => {
    expect(loadConfig({ file: write('empty.yaml', ''), env: {} })).toStrictEqual(EXPECTED_DEFAULTS);
  });
});

describe('files', () => {
  const yaml = [
    'listen: { host: 0.0.0.0, port: 8080 }',
    'dataDir: /var/lib/muster',
    'store: { kind: redis, url: "redis://127.0.0.1:6379", prefix: "m:" }',
    'log: { level: debug }',
    'dialects:',
    '  sharding: { shardCount: 32, startup: parallel, heartbeatInterval: 10s }',
    '  discodo: { compat: discodo-3, enabled: false }',
    '  gamelist: { regTokens: [a, b] }',
    'shutdownTimeout: 2m',
  ].join('\n');
  const json = {
    listen: { host: '0.0.0.0', port: 8080 },
    dataDir: '/var/lib/muster',
    store: { kind: 'redis', url: 'redis://127.0.0.1:6379', prefix: 'm:' },
    log: { level: 'debug' },
    dialects: {
      sharding: { shardCount: 32, startup: 'parallel', heartbeatInterval: '10s' },
      discodo: { compat: 'discodo-3', enabled: false },
      gamelist: { regTokens: ['a', 'b'] },
    },
    shutdownTimeout: '2m',
  };

  function check(config: MusterConfig): void {
    expect(config.listen).toStrictEqual({ host: '0.0.0.0', port: 8080 });
    expect(config.dataDir).toBe('/var/lib/muster');
    expect(config.store).toStrictEqual({ kind: 'redis', url: 'redis://127.0.0.1:6379', prefix: 'm:' });
    expect(config.log.level).toBe('debug');
    expect(config.dialects.sharding.shardCount).toBe(32);
    expect(config.dialects.sharding.startup).toBe('parallel');
    expect(config.dialects.sharding.heartbeatInterval).toBe(10000);
    expect(config.dialects.discodo.compat).toBe('discodo-3');
    expect(config.dialects.discodo.enabled).toBe(false);
    expect(config.dialects.gamelist.regTokens).toStrictEqual(['a', 'b']);
    expect(config.shutdownTimeout).toBe(120000);
  }

  it('load from YAML (.yaml and .yml)', () => {
    check(loadConfig({ file: write('muster.yaml', yaml), env: {} }));
    check(loadConfig({ file: write('muster.yml', yaml), env: {} }));
  });

  it('load from JSON (.json, and JSON in a .yaml file)', () => {
    check(loadConfig({ file: write('muster.json', JSON.stringify(json)), env: {} }));
    check(loadConfig({ file: write('as-yaml.yaml', JSON.stringify(json)), env: {} }));
  });

  it('are found through MUSTER_CONFIG when no file is given', () => {
    const file = write('env.yaml', yaml);
    check(loadConfig({ env: { MUSTER_CONFIG: file } }));
  });

  it('given explicitly win over MUSTER_CONFIG', () => {
    const file = write('explicit.yaml', 'listen: { port: 1111 }');
    const other = write('other.yaml', 'listen: { port: 2222 }');
    expect(loadConfig({ file, env: { MUSTER_CONFIG: other } }).listen.port).toBe(1111);
  });
});

describe('durations and sizes', () => {
  it('parse durations to ms', () => {
    expect(parseDuration('30s')).toBe(30000);
    expect(parseDuration(1500)).toBe(1500);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('5m')).toBe(300000);
    expect(parseDuration('1h')).toBe(3600000);
    expect(parseDuration('1m30s')).toBe(90000);
    expect(parseDuration('1500')).toBe(1500);
    expect(parseDuration(0)).toBe(0);
    for (const bad of ['abc', '', '5 parsecs', '-1s', 's', -1, Number.NaN, Infinity, 2 ** 31, '30 days', true, null]) {
      expect(parseDuration(bad), String(bad)).toBeUndefined();
    }
  });

  it('parse sizes to bytes', () => {
    expect(parseBytes('4MiB')).toBe(4194304);
    expect(parseBytes('32KiB')).toBe(32768);
    expect(parseBytes('1MB')).toBe(1000000);
    expect(parseBytes(1024)).toBe(1024);
    expect(parseBytes('1024')).toBe(1024);
    for (const bad of ['abc', '1XB', '1.3B', -1, 1.5, '']) {
      expect(parseBytes(bad), String(bad)).toBeUndefined();
    }
  });

  it('are normalized in the loaded config', () => {
    const config = withOverrides({
      limits: { maxPayload: '4MiB' },
      dialects: {
        bus: { heartbeatInterval: '30s', requestTimeout: 1500, identifyTimeout: '1.5s', maxMessageBytes: '32KiB' },
        gamelist: { registrationTtl: '1h' },
      },
    });
    expect(config.limits.maxPayload).toBe(4194304);
    expect(config.dialects.bus.heartbeatInterval).toBe(30000);
    expect(config.dialects.bus.requestTimeout).toBe(1500);
    expect(config.dialects.bus.identifyTimeout).toBe(1500);
    expect(config.dialects.bus.maxMessageBytes).toBe(32768);
    expect(config.dialects.gamelist.registrationTtl).toBe(3600000);
  });
});

describe('environment and overrides', () => {
  it('MUSTER_* variables override defaults', () => {
    const config = loadConfig({
      env: { MUSTER_PORT: '9000', MUSTER_HOST: '0.0.0.0', MUSTER_DATA_DIR: '/tmp/x', MUSTER_ADMIN_TOKEN: 'adm' },
    });
    expect(config.listen).toStrictEqual({ host: '0.0.0.0', port: 9000 });
    expect(config.dataDir).toBe('/tmp/x');
    expect(config.admin.token).toBe('adm');
  });

  it('file < env < overrides', () => {
    const file = write(
      'p.yaml',
      'listen: { host: 10.0.0.1, port: 1000 }\ndataDir: /from/file\nadmin: { token: file-token }\n',
    );
    const envOnly = loadConfig({ file, env: { MUSTER_PORT: '2000', MUSTER_ADMIN_TOKEN: 'env-token' } });
    expect(envOnly.listen).toStrictEqual({ host: '10.0.0.1', port: 2000 });
    expect(envOnly.dataDir).toBe('/from/file');
    expect(envOnly.admin.token).toBe('env-token');

    const all = loadConfig({
      file,
      env: { MUSTER_PORT: '2000', MUSTER_DATA_DIR: '/from/env' },
      overrides: { listen: { port: 3000 } },
    });
    expect(all.listen).toStrictEqual({ host: '10.0.0.1', port: 3000 });
    expect(all.dataDir).toBe('/from/env');
    expect(all.admin.token).toBe('file-token');
  });

  it('empty variables are ignored', () => {
    expect(loadConfig({ env: { MUSTER_PORT: '', MUSTER_ADMIN_TOKEN: '' } })).toStrictEqual(EXPECTED_DEFAULTS);
  });

  it('a bad MUSTER_PORT names listen.port', () => {
    const err = configError(() => loadConfig({ env: { MUSTER_PORT: 'http' } }));
    expect(err.key).toBe('listen.port');
    expect(err.value).toBe('http');
    expect(err.message).toContain('MUSTER_PORT');
  });
});

describe('errors name the key, the value and what was expected', () => {
  it('bad duration', () => {
    const err = configError(() => withOverrides({ dialects: { bus: { heartbeatInterval: 'abc' } } }));
    expect(err.key).toBe('dialects.bus.heartbeatInterval');
    expect(err.value).toBe('abc');
    expect(err.expected).toBe('a duration in ms or a string like "30s", at least 1s');
    expect(err.message).toBe(
      'config: dialects.bus.heartbeatInterval = "abc": expected a duration in ms or a string like "30s", at least 1s',
    );
    expect(configError(() => withOverrides({ shutdownTimeout: -5 })).key).toBe('shutdownTimeout');
  });

  it('refuses a duration under its minimum (a zero interval would break the dialect)', () => {
    const zero = configError(() => withOverrides({ dialects: { bus: { heartbeatInterval: 0 } } }));
    expect(zero.message).toBe(
      'config: dialects.bus.heartbeatInterval = 0: shorter than the minimum (1000 ms); expected a duration in ms or a string like "30s", at least 1s',
    );
    expect(configError(() => withOverrides({ dialects: { gamelist: { pingInterval: '0s' } } })).key).toBe('dialects.gamelist.pingInterval');
    expect(configError(() => withOverrides({ dialects: { gamelist: { pingInterval: '999ms' } } })).key).toBe('dialects.gamelist.pingInterval');
    expect(withOverrides({ dialects: { gamelist: { pingInterval: '1s' } } }).dialects.gamelist.pingInterval).toBe(1000);
    expect(configError(() => withOverrides({ dialects: { bus: { requestTimeout: 99 } } })).expected).toMatch(/at least 100ms$/);
    // where 0 means "at once", 0 is allowed
    expect(withOverrides({ dialects: { sharding: { startupDelay: 0, heartbeatGrace: 0 } }, shutdownTimeout: 0 }).shutdownTimeout).toBe(0);
  });

  it('documents every duration with its minimum in the README', () => {
    const readme = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const walk = (schema: Record<string, unknown>, key: string): Array<[string, number]> => {
      if (typeof schema['minimumMs'] === 'number') return [[key, schema['minimumMs']]];
      const props = schema['properties'] as Record<string, Record<string, unknown>> | undefined;
      return props ? Object.entries(props).flatMap(([k, v]) => walk(v, key ? `${key}.${k}` : k)) : [];
    };
    const durations = walk(MusterConfigSchema as unknown as Record<string, unknown>, '');
    expect(durations.length).toBeGreaterThan(20);
    for (const [key, min] of durations) {
      const shown = min === 0 ? '0' : min >= 1000 ? `${min / 1000}s` : `${min}ms`;
      expect(readme, key).toMatch(new RegExp(`\\| \`${key.replaceAll('.', '\\.')}\` \\| [^|]+ \\| ${shown} \\|`));
    }
  });

  it('bad size', () => {
    const err = configError(() => withOverrides({ dialects: { bus: { maxBufferedBytes: '4 lots' } } }));
    expect(err.key).toBe('dialects.bus.maxBufferedBytes');
    expect(err.value).toBe('4 lots');
    expect(err.expected).toMatch(/size in bytes/);
  });

  it('bad enum', () => {
    const err = configError(() => withOverrides({ dialects: { sharding: { startup: 'random' } } }));
    expect(err.key).toBe('dialects.sharding.startup');
    expect(err.value).toBe('random');
    expect(err.expected).toBe('one of "sequential", "parallel"');
    expect(err.message).toContain('dialects.sharding.startup = "random"');
    expect(configError(() => withOverrides({ store: { kind: 'mongo' } })).key).toBe('store.kind');
    expect(configError(() => withOverrides({ log: { level: 'verbose' } })).key).toBe('log.level');
  });

  it('unknown key, with a suggestion', () => {
    const err = configError(() => withOverrides({ dialects: { bus: { tokn: 'secret' } } }));
    expect(err.key).toBe('dialects.bus.tokn');
    expect(err.value).toBe('secret');
    expect(err.expected).toContain('did you mean "token"?');
    expect(err.message).toContain('unknown key');
    expect(configError(() => withOverrides({ dialect: {} })).key).toBe('dialect');
    expect(configError(() => withOverrides({ dialects: { redis: {} } })).key).toBe('dialects.redis');
  });

  it('unknown key in a file', () => {
    const file = write('typo.yaml', 'listen:\n  prot: 80\n');
    const err = configError(() => loadConfig({ file, env: {} }));
    expect(err.key).toBe('listen.prot');
    expect(err.expected).toContain('did you mean "port"?');
  });

  it('wrong type', () => {
    const err = configError(() => withOverrides({ dialects: { sharding: { shardCount: 'many' } } }));
    expect(err.key).toBe('dialects.sharding.shardCount');
    expect(err.value).toBe('many');
    expect(err.expected).toMatch(/integer/);
    const bool = configError(() => withOverrides({ dialects: { bus: { enabled: 'yes' } } }));
    expect(bool.key).toBe('dialects.bus.enabled');
    expect(bool.expected).toBe('true or false');
    const section = configError(() => withOverrides({ limits: [1, 2] }));
    expect(section.key).toBe('limits');
    expect(section.expected).toMatch(/mapping/);
    const list = configError(() => withOverrides({ dialects: { gamelist: { regTokens: 'one' } } }));
    expect(list.key).toBe('dialects.gamelist.regTokens');
  });

  it('secrets are not echoed', () => {
    const err = configError(() => withOverrides({ admin: { token: 123456 } }));
    expect(err.key).toBe('admin.token');
    expect(err.message).not.toContain('123456');
    expect(err.value).toBe('<redacted>');
  });

  it('port out of range', () => {
    const err = configError(() => withOverrides({ listen: { port: 70000 } }));
    expect(err.key).toBe('listen.port');
    expect(err.value).toBe(70000);
    expect(err.expected).toBe('an integer from 0 to 65535');
    expect(err.message).toBe('config: listen.port = 70000: expected an integer from 0 to 65535');
    expect(configError(() => withOverrides({ listen: { port: 80.5 } })).key).toBe('listen.port');
    expect(withOverrides({ listen: { port: 0 } }).listen.port).toBe(0);
  });

  it('duplicate dialect paths', () => {
    const err = configError(() => withOverrides({ dialects: { bus: { path: '/sharding' } } }));
    expect(err.key).toBe('dialects.bus.path');
    expect(err.value).toBe('/sharding');
    expect(err.message).toContain('dialects.sharding.path');
    // a disabled dialect's path does not count
    const ok = withOverrides({ dialects: { sharding: { enabled: false }, bus: { path: '/sharding' } } });
    expect(ok.dialects.bus.path).toBe('/sharding');
    // a trailing slash is the same path
    expect(configError(() => withOverrides({ dialects: { discodo: { path: '/bus/' } } })).key).toBe(
      'dialects.discodo.path',
    );
  });

  it('dialect paths that collide with HTTP routes or are not paths', () => {
    for (const p of ['/healthz', '/readyz', '/metrics', '/api/v1', '/api/v1/nodes', '/v2/servers', '/client/servers', '/']) {
      const err = configError(() => withOverrides({ dialects: { gamelist: { path: p } } }));
      expect(err.key, p).toBe('dialects.gamelist.path');
      expect(err.value, p).toBe(p);
    }
    for (const p of ['bus', '', '/a b', '/x?y', '/a/../healthz', '//bus']) {
      expect(configError(() => withOverrides({ dialects: { bus: { path: p } } })).key, p).toBe('dialects.bus.path');
    }
    expect(withOverrides({ dialects: { bus: { path: '/v2/bus' } } }).dialects.bus.path).toBe('/v2/bus');
  });

  it('missing file', () => {
    const file = path.join(dir, 'nope.yaml');
    const err = configError(() => loadConfig({ file, env: {} }));
    expect(err.key).toBe(file);
    expect(err.message).toContain('cannot read');
    expect(err.expected).toMatch(/readable/);
    expect(configError(() => loadConfig({ env: { MUSTER_CONFIG: file } })).key).toBe(file);
  });

  it('YAML syntax error', () => {
    const file = write('broken.yaml', 'listen:\n  port: [7373\nfoo: "\n');
    const err = configError(() => loadConfig({ file, env: {} }));
    expect(err.key).toBe(file);
    expect(err.message).toMatch(/YAML syntax error at line \d+, column \d+/);
    expect(err.expected).toMatch(/YAML/);
    expect(configError(() => loadConfig({ file: write('dup.yaml', 'dataDir: a\ndataDir: b\n'), env: {} })).key).toBe(
      path.join(dir, 'dup.yaml'),
    );
  });

  it('JSON syntax error and a non-mapping file', () => {
    const bad = write('broken.json', '{"listen": ');
    expect(configError(() => loadConfig({ file: bad, env: {} })).message).toMatch(/JSON syntax error/);
    const list = write('list.yaml', '- a\n- b\n');
    expect(configError(() => loadConfig({ file: list, env: {} })).key).toBe(list);
  });

  it('tls needs both files and they must be readable', () => {
    expect(configError(() => withOverrides({ tls: { cert: 'x.pem' } })).key).toBe('tls.key');
    const cert = write('cert.pem', 'c');
    const missing = path.join(dir, 'key.pem');
    const err = configError(() => withOverrides({ tls: { cert, key: missing } }));
    expect(err.key).toBe('tls.key');
    expect(err.value).toBe(missing);
    const key = write('key.pem', 'k');
    expect(withOverrides({ tls: { cert, key } }).tls).toStrictEqual({ cert, key });
  });

  it('bus frames cannot exceed the socket limit', () => {
    const err = configError(() => withOverrides({ limits: { maxPayload: '16KiB' } }));
    expect(err.key).toBe('dialects.bus.maxMessageBytes');
  });

  it('a fenceMargin that leaves no time to serve is refused, naming the key', () => {
    const err = configError(() => withOverrides({ dialects: { sharding: { heartbeatInterval: 1000, heartbeatGrace: 500, reconnectWindow: 3000, fenceMargin: 1500 } } }));
    expect(err.key).toBe('dialects.sharding.fenceMargin');
    expect(err.message).toMatch(/heartbeatInterval \+ heartbeatGrace \(1500\)/);
    const err2 = configError(() => withOverrides({ dialects: { sharding: { reconnectWindow: '5s', fenceMargin: '5s' } } }));
    expect(err2.key).toBe('dialects.sharding.fenceMargin');
    expect(err2.message).toMatch(/reconnectWindow \(5000\)/);
    expect(withOverrides({ dialects: { sharding: { reconnectWindow: '5s', fenceMargin: '4999ms' } } }).dialects.sharding.fenceMargin).toBe(4999);
    // Not checked when the dialect is off.
    expect(withOverrides({ dialects: { sharding: { enabled: false, reconnectWindow: '5s', fenceMargin: '5s' } } }).dialects.sharding.enabled).toBe(false);
  });

  it('__proto__ is an unknown key, not a prototype', () => {
    const file = write('proto.json', '{"listen": {"__proto__": {"port": 1}}}');
    expect(configError(() => loadConfig({ file, env: {} })).key).toBe('listen.__proto__');
  });
});

describe('secrets', () => {
  const SECRET_KEYS = [
    'admin.token',
    'dialects.sharding.authorization',
    'dialects.clusterio.authSecret',
    'dialects.bus.token',
    'dialects.discodo.password',
    'dialects.gamelist.regTokens',
  ];

  it('are generated on first start, stored with mode 0600, and reused after', () => {
    const dataDir = path.join(dir, 'data', 'nested');
    const config = loadConfig({ env: {} });
    const first = resolveSecrets(config, { dataDir });
    expect(first.generated.map((g) => g.key).sort()).toStrictEqual([...SECRET_KEYS].sort());
    for (const g of first.generated) expect(g.value).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(new Set(first.generated.map((g) => g.value)).size).toBe(SECRET_KEYS.length);

    const c = first.config;
    expect(c.admin.token).toBe(first.generated.find((g) => g.key === 'admin.token')?.value);
    expect(c.dialects.bus.token).toBe(first.generated.find((g) => g.key === 'dialects.bus.token')?.value);
    expect(c.dialects.gamelist.regTokens).toStrictEqual([
      first.generated.find((g) => g.key === 'dialects.gamelist.regTokens')?.value,
    ]);
    for (const s of [c.dialects.sharding.authorization, c.dialects.clusterio.authSecret, c.dialects.discodo.password]) {
      expect(typeof s).toBe('string');
    }
    // the input config is left alone
    expect(config.admin.token).toBeUndefined();

    const file = path.join(dataDir, 'secrets.json');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dataDir)).toStrictEqual(['secrets.json']);

    const second = resolveSecrets(loadConfig({ env: {} }), { dataDir });
    expect(second.generated).toStrictEqual([]);
    expect(second.config).toStrictEqual(first.config);
  });

  it('configured secrets are used and never written to the file', () => {
    const dataDir = path.join(dir, 'data');
    const config = withOverrides({
      admin: { token: 'ADMIN-CONFIGURED' },
      dialects: { bus: { token: 'BUS-CONFIGURED' }, gamelist: { regTokens: ['REG-CONFIGURED'] } },
    });
    const { config: out, generated } = resolveSecrets(config, { dataDir });
    expect(out.admin.token).toBe('ADMIN-CONFIGURED');
    expect(out.dialects.bus.token).toBe('BUS-CONFIGURED');
    expect(out.dialects.gamelist.regTokens).toStrictEqual(['REG-CONFIGURED']);
    expect(generated.map((g) => g.key).sort()).toStrictEqual(
      ['dialects.clusterio.authSecret', 'dialects.discodo.password', 'dialects.sharding.authorization'].sort(),
    );
    const text = fs.readFileSync(path.join(dataDir, 'secrets.json'), 'utf8');
    expect(text).not.toContain('CONFIGURED');
    expect(Object.keys(JSON.parse(text) as object).sort()).toStrictEqual(generated.map((g) => g.key).sort());
  });

  it('are not generated for disabled dialects', () => {
    const dataDir = path.join(dir, 'data');
    const config = withOverrides({
      dialects: {
        sharding: { enabled: false },
        clusterio: { enabled: false },
        bus: { enabled: false },
        discodo: { enabled: false },
        gamelist: { enabled: false },
      },
    });
    const { config: out, generated } = resolveSecrets(config, { dataDir });
    expect(generated.map((g) => g.key)).toStrictEqual(['admin.token']);
    expect(out.dialects.bus.token).toBeUndefined();
    expect(out.dialects.gamelist.regTokens).toBeUndefined();
    expect(out.dialects.sharding.authorization).toBeUndefined();
  });

  it('nothing is written when every secret is configured', () => {
    const dataDir = path.join(dir, 'data');
    const config = withOverrides({
      admin: { token: 'a' },
      dialects: {
        sharding: { authorization: 'b' },
        clusterio: { authSecret: 'c' },
        bus: { token: 'd' },
        discodo: { password: 'e' },
        gamelist: { regTokens: ['f'] },
      },
    });
    expect(resolveSecrets(config, { dataDir }).generated).toStrictEqual([]);
    expect(fs.existsSync(dataDir)).toBe(false);
  });

  it('a corrupt secrets file is a ConfigError', () => {
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    fs.writeFileSync(path.join(dataDir, 'secrets.json'), '{ not json');
    const err = configError(() => resolveSecrets(defaultConfig(), { dataDir }));
    expect(err.key).toBe(path.join(dataDir, 'secrets.json'));
  });

  it('constantTimeEqual tells equal from different, whatever the lengths', () => {
    expect(constantTimeEqual('secret', 'secret')).toBe(true);
    expect(constantTimeEqual('', '')).toBe(true);
    expect(constantTimeEqual('secret', 'secreT')).toBe(false);
    expect(constantTimeEqual('secret', 'secret-longer')).toBe(false);
    expect(constantTimeEqual('', 'x')).toBe(false);
    expect(constantTimeEqual('ünïcode', 'ünïcode')).toBe(true);
  });
});
