/** The `muster` command line (loaded by main.ts, the launcher). */
import { Command, InvalidArgumentError } from 'commander';
import pino, { type Logger } from 'pino';
import { ConfigError, loadConfig } from '../config/load.js';
import { resolveInstanceId } from '../config/instance-id.js';
import { resolveSecrets } from '../config/secrets.js';
import type { MusterConfig } from '../config/schema.js';
import { startMuster } from '../server.js';
import { VERSION } from '../version.js';
import { LogSink } from './log-sink.js';
import { StartupError, ensureDataDir, explainStartupError, preflight, renderBanner, renderGenerated } from './startup.js';
import { renderStatus } from './status.js';

/**
 * The logger and its destination. Pretty on a terminal, JSON lines otherwise (for log
 * shippers), or JSON lines to `log.file`. Logging never blocks: see log-sink.ts.
 */
function makeLogger(log: MusterConfig['log']): { logger: Logger; sink: LogSink } {
  let sink: LogSink;
  try {
    sink = new LogSink({ file: log.file, pretty: log.file === undefined && process.stdout.isTTY === true, maxBufferedBytes: log.maxBufferedBytes });
  } catch (err) {
    process.stderr.write(`muster: log.file: cannot open it (${(err as Error).message}); fix the path or its directory's permissions\n`);
    process.exit(2);
  }
  return { logger: pino({ level: log.level }, sink), sink };
}

/** How long the exit waits for queued log lines. */
const LOG_FLUSH_MS = 500;

/** SIGHUP: the log file is opened again (after logrotate moved it away). */
function reopenLog(sink: LogSink, logger: Logger): void {
  const failed = sink.reopen();
  if (failed !== undefined) logger.error({ err: failed }, 'SIGHUP: log file not reopened; still writing to the old one');
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('expected a port number 0-65535');
  return n;
}

interface StartFlags {
  config?: string;
  host?: string;
  port?: number;
  dataDir?: string;
}

function load(flags: StartFlags): MusterConfig {
  const overrides: Record<string, unknown> = {};
  if (flags.host !== undefined || flags.port !== undefined) {
    overrides.listen = {
      ...(flags.host !== undefined ? { host: flags.host } : {}),
      ...(flags.port !== undefined ? { port: flags.port } : {}),
    };
  }
  if (flags.dataDir !== undefined) overrides.dataDir = flags.dataDir;
  return loadConfig({ ...(flags.config !== undefined ? { file: flags.config } : {}), env: process.env, overrides });
}

async function start(flags: StartFlags): Promise<void> {
  let resolved;
  try {
    const config = load(flags);
    preflight(config);
    ensureDataDir(config.dataDir);
    resolved = resolveSecrets(config, { dataDir: config.dataDir });
    const instance = resolveInstanceId(config.instanceId, config.dataDir);
    resolved = { ...resolved, config: { ...resolved.config, instanceId: instance.id } };
  } catch (err) {
    if (err instanceof ConfigError || err instanceof StartupError) {
      process.stderr.write(`muster: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const generated = renderGenerated(resolved.generated, 'the data directory');
  const { logger, sink } = makeLogger(resolved.config.log);
  let muster;
  try {
    muster = await startMuster({ config: resolved.config, logger, logLinesDropped: () => sink.dropped });
  } catch (err) {
    failStart(err, resolved.config, generated);
  }
  const lines = renderBanner({ version: VERSION, base: muster.url(), dialects: muster.dialects, config: resolved.config });
  if (generated.length > 0) lines.push('', ...generated);

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const hard = setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, resolved.config.shutdownTimeout + 5000);
    hard.unref();
    // The last lines get a moment to reach the log: at most LOG_FLUSH_MS (the reader may be
    // gone), and only what is left of shutdownTimeout.
    const started = Date.now();
    const exit = (code: number): void => {
      const left = resolved.config.shutdownTimeout - (Date.now() - started);
      void sink.flush(Math.max(0, Math.min(LOG_FLUSH_MS, left))).then(() => process.exit(code));
    };
    muster.stop().then(
      () => {
        logger.info('stopped');
        exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        exit(1);
      },
    );
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => {
    reopenLog(sink, logger);
    try {
      const next = resolveSecrets(load(flags), { dataDir: resolved.config.dataDir }).config;
      muster.reloadSecrets(next);
    } catch (err) {
      logger.error({ err: (err as Error).message }, 'SIGHUP: config not reloaded; keeping the old secrets');
    }
  });
  // The banner last: whoever waits for it may signal the process at once.
  process.stdout.write(`${lines.join('\n')}\n`);
}

/**
 * A start-up failure after the secrets were resolved: secrets generated in this run were
 * already saved, so they are shown (stdout) before the one line that says what failed
 * (stderr, exit 2). Failures Muster cannot explain keep their stack trace (exit 1).
 */
function failStart(err: unknown, config: MusterConfig, generated: string[]): never {
  if (generated.length > 0) process.stdout.write(`${generated.join('\n')}\n`);
  const line = explainStartupError(err, config);
  if (line === undefined) throw err;
  process.stderr.write(`muster: ${line}\n`);
  process.exit(2);
}

async function status(flags: { url: string; token?: string }): Promise<void> {
  const token = flags.token ?? process.env.MUSTER_ADMIN_TOKEN;
  if (!token) {
    process.stderr.write('muster status: give --token or set MUSTER_ADMIN_TOKEN\n');
    process.exit(2);
  }
  let res: Response;
  try {
    res = await fetch(`${flags.url.replace(/\/$/, '')}/api/v1/status`, { headers: { authorization: `Bearer ${token}` } });
  } catch (err) {
    process.stderr.write(`muster status: cannot reach ${flags.url}: ${(err as Error).message}\n`);
    process.exit(1);
  }
  if (res.status === 401) {
    process.stderr.write('muster status: the admin token was refused (401)\n');
    process.exit(1);
  }
  if (!res.ok) {
    process.stderr.write(`muster status: ${res.status} ${await res.text()}\n`);
    process.exit(1);
  }
  process.stdout.write(renderStatus((await res.json()) as Record<string, unknown>));
}

const program = new Command();
program.name('muster').description('A master server for fleets of WebSocket-connected workers').version(VERSION);
program
  .command('start')
  .description('run the server')
  .option('-c, --config <file>', 'YAML or JSON config file')
  .option('--host <host>', 'address to listen on')
  .option('-p, --port <port>', 'port to listen on', port)
  .option('--data-dir <dir>', 'where the store and generated secrets live')
  .action((flags: StartFlags) => start(flags));
program
  .command('status')
  .description('print a summary read from the admin API')
  .option('--url <url>', 'the server', process.env.MUSTER_URL ?? 'http://127.0.0.1:7373')
  .option('--token <token>', 'admin token (default: $MUSTER_ADMIN_TOKEN)')
  .action((flags: { url: string; token?: string }) => status(flags));
program
  .command('token')
  .description('mint a token: `token clusterio --slave ID` or `token clusterio --control`')
  .argument('<dialect>', 'the dialect the token is for (clusterio)')
  .option('--slave <id>', 'a slave token for this slave id')
  .option('--control', 'a control token')
  .option('-c, --config <file>', 'YAML or JSON config file')
  .option('--data-dir <dir>', 'where the generated secrets live')
  .action(async (dialect: string, flags: StartFlags & { slave?: string; control?: boolean }) => {
    const fail = (msg: string): never => {
      process.stderr.write(`muster token: ${msg}\n`);
      process.exit(2);
    };
    if (dialect !== 'clusterio') fail(`no tokens for "${dialect}" (only clusterio)`);
    if ((flags.slave === undefined) === (flags.control !== true)) fail('give exactly one of --slave ID or --control');
    if (flags.slave !== undefined && !/^[+-]?\d+$/.test(flags.slave.trim())) fail(`--slave expects an integer id, not "${flags.slave}"`);
    let secret: string | undefined;
    try {
      const config = load(flags);
      ensureDataDir(config.dataDir);
      const resolved = resolveSecrets(config, { dataDir: config.dataDir });
      secret = resolved.config.dialects.clusterio.authSecret;
      // Secrets generated here are shown once, as `start` would have shown them (on stderr: stdout is the token).
      if (resolved.generated.length > 0) {
        process.stderr.write(`Generated secrets (stored with mode 0600 in ${config.dataDir}; shown only this once):\n`);
        for (const g of resolved.generated) process.stderr.write(`  ${g.key}: ${g.value}\n`);
      }
    } catch (err) {
      if (err instanceof ConfigError || err instanceof StartupError) fail(err.message);
      throw err;
    }
    if (secret === undefined) fail('dialects.clusterio is disabled in the config, so it has no authSecret');
    const { mintToken } = await import('../dialects/clusterio/token.js');
    const claims = flags.slave !== undefined ? ({ aud: 'slave', id: flags.slave } as const) : ({ aud: 'control' } as const);
    process.stdout.write(`${await mintToken(secret as string, claims)}\n`);
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`muster: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
