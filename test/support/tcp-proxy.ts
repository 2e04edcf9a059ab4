/**
 * A small TCP proxy on 127.0.0.1 (node:net), for cluster tests: put it between a client
 * and what it talks to, then cut the line without touching either end.
 *
 *   const p = await startTcpProxy(() => redis.port);   // the target is asked per connection
 *   p.cut();      // destroys every open pair and refuses new connections (connect, then RST)
 *   p.heal();     // accepts again
 *   await p.close();
 *
 * The target is a function so that a "front door" proxy can pick a live backend for each
 * new connection (three instances behind one address).
 */
import net from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** Open client connections. */
  readonly open: number;
  /** Connections accepted so far (each piped to a target). */
  readonly accepted: number;
  cut(): void;
  heal(): void;
  close(): Promise<void>;
}

/** `target` returns the port to connect to, or undefined to refuse this connection. */
export async function startTcpProxy(target: () => number | undefined): Promise<TcpProxy> {
  const pairs = new Set<net.Socket>();
  let down = false;
  let accepted = 0;
  const server = net.createServer((client) => {
    const port = down ? undefined : target();
    if (port === undefined) {
      client.resetAndDestroy();
      return;
    }
    accepted++;
    const upstream = net.connect(port, '127.0.0.1');
    pairs.add(client);
    pairs.add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      pairs.delete(client);
      pairs.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    port,
    get open() {
      return pairs.size / 2;
    },
    get accepted() {
      return accepted;
    },
    cut() {
      down = true;
      for (const s of pairs) s.destroy();
      pairs.clear();
    },
    heal() {
      down = false;
    },
    async close() {
      down = true;
      for (const s of pairs) s.destroy();
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
