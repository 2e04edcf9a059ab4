import v8 from 'node:v8';

/**
 * Muster keeps V8's young generation at its initial size (the semi-spaces are not grown).
 *
 * Loading Muster (fastify, pino, prom-client, the dialects and their compiled schemas)
 * allocates some 15 MiB that live as long as the process, and every idle connection
 * adds a few KiB more that live as long as it does. V8's scavenger, seeing most of
 * what it copies survive, doubles the semi-spaces up to their 16 MiB maximum; the pages
 * touched on the way stay resident: about 13 MiB of an idle server's memory at start,
 * and as much again once thousands of peers have connected. Muster's steady traffic
 * is short-lived frames and effects, which die young in a small young generation too,
 * so it keeps the initial size: long-lived objects reach the old generation, where they
 * end up anyway, a few scavenges sooner. Measured in bench/ANALYSIS.md (issue 12): the
 * baseline RSS −13 MiB, idle connections −2 KiB each at 19,000, the CPU per P1 round
 * trip within a few per cent.
 *
 * The hold must be on before the module graph is parsed (parsing allocates too), so the
 * launcher puts it on (src/cli/main.ts), then imports the rest. A semi-space flag given
 * to node (command line or NODE_OPTIONS) is left alone: `NODE_OPTIONS=--max-semi-space-size=16`
 * (V8's default maximum) gives V8's own sizing back (`--semi-space-growth-factor` is not
 * allowed in NODE_OPTIONS, only on node's command line).
 */
export function holdYoungGeneration(): void {
  if ([...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes('semi-space'))) return;
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}
