/**
 * `npx tsx bench/profile.ts FILE.cpuprofile [TOP]`: self time by function and by file.
 * Profiles come from `npm run bench -- P1 P2 --profile` (bench/.tmp/profiles/…).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { summarizeProfile } from './lib/profile.js';

const [file, top] = process.argv.slice(2);
if (!file) {
  console.error('usage: npx tsx bench/profile.ts FILE.cpuprofile [TOP]');
  process.exit(2);
}
// The runner leaves windows.json (the measured windows) beside the profiles.
const winFile = path.join(path.dirname(file), 'windows.json');
const windows = existsSync(winFile) ? (JSON.parse(readFileSync(winFile, 'utf8')) as Array<{ start: number; end: number }>) : undefined;
console.log(summarizeProfile(file, Number(top ?? 30), windows));
