import type { Socket } from '../../src/core/socket.js';

/**
 * A Socket with no network under a real Connection: records frames, pings, corks and
 * closes, and lets a test set the backlog. For socketless component tests.
 */
export class FakeSocket implements Socket {
  readonly sent: string[] = [];
  closed: { code: number; reason: string } | undefined;
  terminated = false;
  pings = 0;
  corks = 0;
  bufferedAmount = 0;
  frameLimit: number | undefined;
  #open = true;

  get raw(): this {
    return this;
  }

  get open(): boolean {
    return this.#open;
  }

  sendText(data: Buffer | string): void {
    this.sent.push(typeof data === 'string' ? data : data.toString('utf8'));
  }

  close(code: number, reason: string): void {
    this.#open = false;
    this.closed ??= { code, reason };
  }

  terminate(): void {
    this.#open = false;
    this.terminated = true;
  }

  ping(): void {
    this.pings++;
  }

  cork(): boolean {
    this.corks++;
    return true;
  }

  uncork(): void {}

  setFrameLimit(bytes: number): boolean {
    this.frameLimit = bytes;
    return true;
  }

  /** The frames sent so far, parsed as JSON. */
  json(): unknown[] {
    return this.sent.map((s) => JSON.parse(s) as unknown);
  }
}
