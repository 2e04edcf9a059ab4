/**
 * Micro-bench of the bus codec's decode (the per-frame cost on bench P1's hot path):
 * a typical DIRECT request frame, decoded in rounds; prints min and median ns/decode.
 * Run: npx tsx bench/bus-decode.ts. The machine is shared, so compare medians of
 * several runs, interleaved, before and after a change.
 */
import { decode } from '../src/protocols/bus/messages.js';

const frame = JSON.stringify({
  op: 0,
  id: 'req-12345',
  event: 'get_guild',
  intent: { target: 'DIRECT', identifier: 'worker-7' },
  expect_reply: true,
  data: { guild: '123456789012345678', fields: ['name', 'members'] },
});
const N = 200_000;
const ROUNDS = 15;

function round(): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) if (!decode(frame).ok) throw new Error('the frame did not decode');
  return Number(process.hrtime.bigint() - t0) / N;
}

const times = Array.from({ length: ROUNDS }, round).sort((a, b) => a - b);
console.log(`bus decode, ${frame.length}-byte DIRECT request: min ${times[0]?.toFixed(0)} ns, median ${times[ROUNDS >> 1]?.toFixed(0)} ns`);
