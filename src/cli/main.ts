#!/usr/bin/env node
/**
 * The `muster` launcher. It keeps V8's young generation at its initial size while
 * Muster loads and starts (see young-gen.ts; `startMuster` lets it grow again): that has
 * to be set before the module graph is even parsed, so the command line itself
 * (program.ts) is imported only after.
 */
import { holdYoungGeneration } from '../young-gen.js';

holdYoungGeneration();
await import('./program.js');
