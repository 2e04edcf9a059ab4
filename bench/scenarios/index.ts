import type { Scenario } from '../lib/scenario.js';
import { p1 } from './p1-direct.js';
import { p2 } from './p2-fanout.js';
import { p3 } from './p3-idle.js';
import { p7 } from './p7-storm.js';

/**
 * Every scenario `npm run bench` knows, in the order it runs them. To add one (P4
 * fleet start-up, P5 failover, P6 game list, once their dialects land), write a module
 * in this folder exporting a `Scenario` and list it here.
 */
export const SCENARIOS: readonly Scenario[] = [p1, p2, p3, p7];
