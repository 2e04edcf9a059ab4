import { HOST } from '../lib/net.js';
import type { Scenario, ScenarioContext, ScenarioResult, Table } from '../lib/scenario.js';
import { SHARDING_KEY } from '../lib/sharding.js';
import { startServer, stopServer } from '../lib/servers.js';
import { fmt, fmtRatio, median } from '../lib/stats.js';

const SHARDS = 256;
const MAX_CONCURRENCY = 16;
const CONTROLS = 8;
/** Discord's window is 5 s; the bench scales it down (the ratio to the floor is scale-free). */
const WINDOW_MS = 250;
/** `identifyMargin`: 10 % of the window (the default is 5 % of 5 s; latency jitter does not scale down with the window). */
const MARGIN_MS = 25;
const KEY = SHARDING_KEY;
const FLOOR_MS = Math.ceil(SHARDS / MAX_CONCURRENCY) * WINDOW_MS;

type Mode = 'parallel' | 'sequential';
const MODES: Mode[] = ['parallel', 'sequential'];

interface FleetTimes {
  identifiedAt: number;
  firstConnectAt: number;
  lastGrantAt: number;
  granted: number;
  /** Gaps between grants of one bucket as they arrived at the CONTROLs, ms. */
  gaps: number[];
}

export const p4: Scenario = {
  id: 'P4',
  title: 'fleet start-up: 256 shards, maxConcurrency 16, 8 CONTROLs',
  method:
    `A fresh Muster per run with the sharding dialect: ${SHARDS} shards, \`maxConcurrency\` ${MAX_CONCURRENCY}, ` +
    `\`identifyWindow\` ${WINDOW_MS} ms and \`identifyMargin\` ${MARGIN_MS} ms (Discord's window is 5 s, scaled down 20×, the ratio to the floor does not depend on it; the margin covers latency jitter, which does not scale down, so it is 10 % of this window where the default is 5 % of 5 s), ` +
    `\`expectedControls\` ${CONTROLS} (start-up begins as soon as all have identified; \`startupDelay\` 5 s is only the fallback). ` +
    `${CONTROLS} simulated CONTROLs (real \`ShardingControl\` clients, \`features: ["identify-queue"]\`, in one load-generator process): ` +
    'their start hook asks `identifySlot` for every shard it is given and counts the shard as connected once the MASTER grants it ' +
    '(a simulated shard is READY at once). Measured: from the moment the last CONTROL is IDENTIFIED (start-up begins) to the ' +
    `last shard granted, against Discord's floor \`ceil(${SHARDS}/${MAX_CONCURRENCY}) × window\` = ${FLOOR_MS} ms. ` +
    '`startup: "parallel"` (every identify-queue CONTROL gets CONNECT at once) is the target; `startup: "sequential"` ' +
    '(the seed mode: the next CONTROL gets CONNECT only after the previous reported CONNECTED) is measured beside it, ' +
    'with the same CONTROLs. The modes alternate.',
  budgetMs: 90_000,
  async run(ctx: ScenarioContext): Promise<ScenarioResult> {
    const reps = ctx.reps;
    const { child: gen } = await ctx.group.start({ name: 'p4-controls', script: 'clients/sharding.ts' });
    const total: Record<Mode, number[]> = { parallel: [], sequential: [] };
    const fromConnect: Record<Mode, number[]> = { parallel: [], sequential: [] };
    const minGap: Record<Mode, number[]> = { parallel: [], sequential: [] };
    let shortGaps = 0;
    for (let rep = 0; rep < reps; rep++) {
      for (const mode of rep % 2 === 0 ? MODES : [...MODES].reverse()) {
        ctx.checkDeadline();
        const server = await startServer(ctx.group, 'muster', {
          label: `p4-${mode}`,
          cpuProfDir: ctx.cpuProfDir,
          dialects: {
            sharding: {
              enabled: true,
              authorization: KEY,
              botToken: 'bench-bot-token',
              shardCount: SHARDS,
              maxConcurrency: MAX_CONCURRENCY,
              identifyWindow: WINDOW_MS,
              identifyMargin: MARGIN_MS,
              startupDelay: 5000,
              expectedControls: CONTROLS,
              startup: mode,
              connectTimeout: 60_000,
            },
          },
        });
        const t = await gen.call<FleetTimes>(
          'fleet',
          { url: `ws://${HOST}:${server.port}/sharding`, key: KEY, n: CONTROLS, shardCount: SHARDS, timeoutMs: 30_000 },
          40_000,
        );
        await gen.call('close');
        await stopServer(ctx.group, server);
        const ms = t.lastGrantAt - t.identifiedAt;
        total[mode].push(ms);
        fromConnect[mode].push(t.lastGrantAt - t.firstConnectAt);
        minGap[mode].push(Math.min(...t.gaps));
        shortGaps += t.gaps.filter((g) => g < WINDOW_MS).length;
        ctx.progress(`P4 rep ${rep + 1}/${reps} ${mode}: ${SHARDS} shards up in ${fmt(ms)} ms (${fmtRatio(ms / FLOOR_MS)} the floor)`);
      }
    }
    const par = median(total.parallel);
    const seq = median(total.sequential);
    const table: Table = {
      title: `P4: ${SHARDS} shards, maxConcurrency ${MAX_CONCURRENCY}, ${CONTROLS} CONTROLs, identify window ${WINDOW_MS} ms (medians; floor ${FLOOR_MS} ms)`,
      head: ['start-up mode', 'last CONTROL identified → last shard granted, ms', '÷ floor', 'first CONNECT → last grant, ms', 'runs, ms', 'shortest same-bucket gap at the CONTROLs, ms'],
      rows: MODES.map((m) => [
        m === 'parallel' ? 'parallel + identify queue' : 'sequential (seed mode)',
        fmt(median(total[m])),
        fmtRatio(median(total[m]) / FLOOR_MS),
        fmt(median(fromConnect[m])),
        total[m].map((x) => fmt(x)).join(' / '),
        minGap[m].map((x) => x.toFixed(1)).join(' / '),
      ]),
    };
    return {
      tables: [table],
      verdicts: [
        {
          target: `P4: fleet start-up ≤ 1.05× Discord's floor ceil(${SHARDS}/${MAX_CONCURRENCY}) × window (parallel start, identify queue)`,
          holds: par / FLOOR_MS <= 1.05,
          detail: `${fmtRatio(par / FLOOR_MS)} (${fmt(par)} ms vs ${FLOOR_MS} ms with a ${WINDOW_MS} ms window); sequential seed mode ${fmtRatio(seq / FLOOR_MS)} (${fmt(seq)} ms)`,
        },
      ],
      notes: [
        `Gateway side: the time each grant reached its CONTROL (where the shard sends IDENTIFY) was recorded per bucket; with \`identifyMargin\` ${MARGIN_MS} ms, ${shortGaps} gap(s) of all runs were shorter than the ${WINDOW_MS} ms window.`,
        `The floor counts ${Math.ceil(SHARDS / MAX_CONCURRENCY)} whole windows; the first grant of each bucket goes out at once, so the last one is due ${Math.ceil(SHARDS / MAX_CONCURRENCY) - 1} windows after start-up begins (${fmt((Math.ceil(SHARDS / MAX_CONCURRENCY) - 1) * WINDOW_MS)} ms): a ratio a little under 1 is the schedule itself, not a measuring error.`,
      ],
    };
  },
};
