import { sleep } from './ipc.js';
import { cpuMicros } from './proc.js';

export interface Window {
  /** Operations completed inside the window (round trips, deliveries, …). */
  count: number;
  /** Wall time of the window, ms. */
  ms: number;
  /** Server CPU (user + system, all threads) spent inside the window, µs. */
  cpuUs: number;
}

/**
 * Measures one steady-state window: reads the server's CPU and the operation count,
 * waits until `windowMs` has passed or `maxCount` operations were done (whichever
 * first; polled every 100 ms), and reads both again. The load must already be running.
 */
export async function measureWindow(
  serverPid: number,
  readCount: () => Promise<number>,
  windowMs: number,
  maxCount: number,
  checkDeadline: () => void,
  edge: (edge: 'start' | 'end') => Promise<void> = async () => undefined,
): Promise<Window> {
  await edge('start');
  const c0 = await readCount();
  const cpu0 = cpuMicros(serverPid);
  const t0 = performance.now();
  let c = c0;
  while (performance.now() - t0 < windowMs && c - c0 < maxCount) {
    checkDeadline();
    await sleep(Math.min(100, Math.max(1, windowMs - (performance.now() - t0))));
    if (performance.now() - t0 < windowMs) c = await readCount();
  }
  const cpu1 = cpuMicros(serverPid);
  const t1 = performance.now();
  const c1 = await readCount();
  await edge('end');
  return { count: c1 - c0, ms: t1 - t0, cpuUs: cpu1 - cpu0 };
}

/** The order of the implementations in repetition `rep`: rotated, so none always goes first. */
export function rotation<T>(items: readonly T[], rep: number): T[] {
  const k = rep % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}
