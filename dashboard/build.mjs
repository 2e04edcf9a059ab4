// Bundles the dashboard (Preact) into dist/dashboard: index.html, app.js, app.css.
import { copyFileSync, mkdirSync } from 'node:fs';
import { fileURLToPath, URL } from 'node:url';
import { build } from 'esbuild';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const out = here('../dist/dashboard/');
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [here('./src/main.tsx')],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outfile: `${out}app.js`,
  legalComments: 'none',
  logLevel: 'warning',
});
copyFileSync(here('./index.html'), `${out}index.html`);
copyFileSync(here('./app.css'), `${out}app.css`);
