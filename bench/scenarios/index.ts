import type { Scenario } from '../lib/scenario.js';
import { p1 } from './p1-direct.js';
import { p2 } from './p2-fanout.js';
import { p3 } from './p3-idle.js';
import { p4 } from './p4-startup.js';
import { p5 } from './p5-failover.js';
import { p6 } from './p6-gamelist.js';
import { p7 } from './p7-cluster-idle.js';
import { p8 } from './p8-cross.js';
import { p9 } from './p9-leader.js';
import { p10 } from './p10-junk.js';

/**
 * Every scenario `npm run bench` knows, in the order it runs them. To add one, write a
 * module in this folder exporting a `Scenario` and list it here.
 */
export const SCENARIOS: readonly Scenario[] = [p1, p2, p3, p4, p5, p6, p7, p8, p9, p10];
