/**
 * A whole server-to-client text frame (RFC 6455 §5.2: FIN, opcode 1, no mask) in one
 * buffer: the header and the payload in one allocation, handed to the TCP socket as one
 * write. `ws`'s own send makes the header a separate buffer and writes the two under a
 * cork, which Node sends as a `writev` of two chunks (and a string payload is encoded
 * again in C++); one buffer goes out as one plain write. Same bytes on the wire.
 */
export function textFrame(data: Buffer | string): Buffer {
  const len = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  const head = len < 126 ? 2 : len < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(head + len);
  frame[0] = 0x81;
  if (head === 2) {
    frame[1] = len;
  } else if (head === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(len / 0x1_0000_0000), 2);
    frame.writeUInt32BE(len >>> 0, 6);
  }
  if (typeof data === 'string') frame.write(data, head, len, 'utf8');
  else data.copy(frame, head);
  return frame;
}
