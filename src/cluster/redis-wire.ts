/** The Redis broker's messages: what each channel carries, and a message's header line. */

export type Sub =
  | { readonly kind: 'inst' }
  | { readonly kind: 'grp'; readonly scope: string; readonly group: string }
  | { readonly kind: 'all'; readonly scope: string }
  | { readonly kind: 'topic'; readonly topic: string };

/** A message's header: origin instance, scope, connection, except, binary frame. */
export interface Header {
  readonly o: string;
  readonly s?: string;
  readonly c?: string;
  readonly x?: string;
  readonly b?: 1;
}

export interface Out {
  channel: string | undefined;
  readonly conn?: string;
  readonly payload: Buffer;
}

/** A message: the JSON header, a newline, and the frame's bytes as they were. */
export function pack(h: Header, frame: string | Buffer): Buffer {
  const head = Buffer.from(`${JSON.stringify(h)}\n`);
  return Buffer.concat([head, typeof frame === 'string' ? Buffer.from(frame) : frame]);
}
