import { describe, expect, it } from 'vitest';
import * as ws from 'ws';
import { textFrame } from '../../src/transport/frame.js';

interface FrameOptions {
  fin: boolean;
  rsv1: boolean;
  opcode: number;
  mask: boolean;
  readOnly: boolean;
}
// `ws` exports its Sender at run time; its type definitions do not declare it.
const { Sender } = ws as unknown as { Sender: { frame(data: Buffer, options: FrameOptions): Buffer[] } };

/** What `ws` itself puts on the wire for an unmasked final text frame. */
function wsFrame(data: Buffer | string): Buffer {
  const parts = Sender.frame(typeof data === 'string' ? Buffer.from(data) : data, {
    fin: true,
    rsv1: false,
    opcode: 1,
    mask: false,
    readOnly: false,
  });
  return Buffer.concat(parts);
}

describe('textFrame', () => {
  // Each length where the header changes shape: 7-bit, 16-bit and 64-bit lengths.
  for (const len of [0, 1, 125, 126, 127, 65_535, 65_536, 70_000]) {
    it(`frames ${len} bytes as ws does, from a Buffer and from a string`, () => {
      const text = 'x'.repeat(len);
      expect(textFrame(Buffer.from(text)).equals(wsFrame(text))).toBe(true);
      expect(textFrame(text).equals(wsFrame(text))).toBe(true);
    });
  }

  it('counts a string in UTF-8 bytes, not characters', () => {
    const text = `{"data":"${'é✓😀'.repeat(40)}"}`;
    const frame = textFrame(text);
    expect(frame.equals(wsFrame(text))).toBe(true);
    expect(frame[1]).toBe(126);
    expect(frame.readUInt16BE(2)).toBe(Buffer.byteLength(text));
  });
});
