/**
 * Minimal WebSocket peers over plain TCP for the connection-heavy scenarios (P3, P7):
 * an HTTP upgrade, the handshake each protocol needs, and answers to heartbeats, with
 * pre-built (masked) frames. The servers see exactly what a real client sends; the
 * client side costs a fraction of a `ws` or socket.io-client instance, so 19,000
 * connections are about the server, not about the load generator sharing its cores.
 *
 *   muster  GET /bus, IDENTIFY {token}; ready when the server's IDENTIFY arrives;
 *           answers {"op":3} (PING) with {"op":4} (PONG)
 *   ws      GET /; ready on {"op":"hello"}; answers ws pings with pongs
 *   sio     GET /socket.io/?EIO=4&transport=websocket; on the engine.io open packet
 *           sends "40" (connect to "/"); ready on "40…"; answers "2" with "3"
 */
import { connect, type Socket } from 'node:net';
import { BUS_TOKEN, type Impl } from '../lib/constants.js';

export interface RawConn {
  /** Drops the TCP connection at once, with no close frame. */
  drop(): void;
  /** Whether the socket is still open (the server has not closed it). */
  open(): boolean;
}

const MASK = Buffer.from([0x12, 0x34, 0x56, 0x78]);

/** A client frame (clients must mask) with a payload under 126 bytes. */
function clientFrame(opcode: number, payload: string): Buffer {
  const p = Buffer.from(payload);
  if (p.length >= 126) throw new Error('payload too long for a short frame');
  const out = Buffer.alloc(6 + p.length);
  out[0] = 0x80 | opcode;
  out[1] = 0x80 | p.length;
  MASK.copy(out, 2);
  for (let i = 0; i < p.length; i++) out[6 + i] = (p[i] as number) ^ (MASK[i & 3] as number);
  return out;
}

const TEXT = 0x1;
const CLOSE = 0x8;
const PING = 0x9;
const BUS_IDENTIFY = clientFrame(TEXT, JSON.stringify({ op: 1, data: { token: BUS_TOKEN } }));
const BUS_PONG = clientFrame(TEXT, '{"op":4}');
const WS_PONG = clientFrame(0xa, '');
const SIO_CONNECT = clientFrame(TEXT, '40');
const SIO_PONG = clientFrame(TEXT, '3');

function pathFor(impl: Impl): string {
  switch (impl) {
    case 'muster':
      return '/bus';
    case 'ws':
      return '/';
    case 'sio':
      return '/socket.io/?EIO=4&transport=websocket';
    default:
      throw new Error(`no raw client for ${impl}`);
  }
}

/** Opens one connection; resolves once the peer is identified (or rejects, bounded by `timeoutMs`). */
export function openRaw(impl: Impl, url: string, timeoutMs: number, localAddress?: string): Promise<RawConn> {
  const u = new URL(url);
  const port = Number(u.port);
  const host = u.hostname;
  const request =
    `GET ${pathFor(impl)} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';

  return new Promise<RawConn>((resolve, reject) => {
    const sock: Socket = connect({ host, port, noDelay: true, ...(localAddress ? { localAddress } : {}) });
    let settled = false;
    let upgraded = false;
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error(`${impl}: not identified within ${timeoutMs} ms`)), timeoutMs);
    const conn: RawConn = { drop: () => sock.destroy(), open: () => !sock.destroyed };

    function fail(err: Error): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    }
    function ready(): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(conn);
    }

    function onText(text: string): void {
      switch (impl) {
        case 'muster':
          if (text === '{"op":3}') sock.write(BUS_PONG);
          else if (!settled && text.startsWith('{"op":1')) ready();
          return;
        case 'ws':
          if (!settled && text.startsWith('{"op":"hello"')) ready();
          return;
        case 'sio':
          if (text === '2') sock.write(SIO_PONG);
          else if (text.startsWith('0{')) sock.write(SIO_CONNECT);
          else if (!settled && text.startsWith('40')) ready();
          return;
        default:
          return;
      }
    }

    /** Parses the server's (unmasked) frames in `buf`, keeping an incomplete tail. */
    function frames(): void {
      let off = 0;
      for (;;) {
        if (buf.length - off < 2) break;
        const b0 = buf[off] as number;
        let len = (buf[off + 1] as number) & 0x7f;
        let hdr = 2;
        if (len === 126) {
          if (buf.length - off < 4) break;
          len = buf.readUInt16BE(off + 2);
          hdr = 4;
        } else if (len === 127) {
          if (buf.length - off < 10) break;
          len = Number(buf.readBigUInt64BE(off + 2));
          hdr = 10;
        }
        if (buf.length - off < hdr + len) break;
        const opcode = b0 & 0x0f;
        if (opcode === TEXT) onText(buf.toString('utf8', off + hdr, off + hdr + len));
        else if (opcode === PING) sock.write(WS_PONG);
        else if (opcode === CLOSE) {
          if (!settled) fail(new Error(`${impl}: closed by the server during the handshake`));
          sock.destroy();
          return;
        }
        off += hdr + len;
      }
      buf = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
    }

    sock.on('connect', () => {
      sock.write(request);
      if (impl === 'muster') sock.write(BUS_IDENTIFY);
    });
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (buf.length > 8192) fail(new Error(`${impl}: no end of the HTTP response`));
          return;
        }
        const status = buf.toString('latin1', 0, 12);
        if (status !== 'HTTP/1.1 101') {
          fail(new Error(`${impl}: upgrade refused: ${buf.toString('latin1', 0, Math.min(end, 200))}`));
          return;
        }
        upgraded = true;
        buf = buf.subarray(end + 4);
      }
      frames();
    });
    sock.on('error', (err) => fail(err));
    sock.on('close', () => fail(new Error(`${impl}: connection closed before it was identified`)));
  });
}
