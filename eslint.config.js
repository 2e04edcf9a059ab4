import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Libraries only the server may load (the client package does not depend on them). */
const SERVER_LIBS = ['better-sqlite3', 'fastify', '@fastify/*', 'pino', 'pino-*', 'prom-client', 'commander', 'jose', 'yaml'];

export default tseslint.config(
  { ignores: ['dist/**', 'packages/*/dist/**', 'dist-check/**', 'node_modules/**', 'muster-data/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['**/dialects/**', '**/protocols/**', '**/http/**', '**/cli/**'] }],
    },
  },
  {
    // The config loads and validates before any server code runs: it imports nothing outside config/.
    files: ['src/config/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['../core/**', '../dialects/**', '../protocols/**', '../store/**', '../http/**', '../transport/**', '../cli/**', '../cluster/**', '../client/**', '../../core/**', '../../dialects/**', '../../protocols/**', '../../store/**', '../../http/**', '../../transport/**', '../../cli/**', '../../cluster/**', '../../client/**', '../server.js', '../index.js', '../../server.js', '../../index.js'] }],
    },
  },
  {
    // The client package (@muster/client) compiles src/client and src/protocols only: no server code, no server library.
    files: ['src/client/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['**/core/**', '**/dialects/**', '**/store/**', '**/http/**', '**/transport/**', '**/cli/**', '**/cluster/**', '**/config/**', '../server.js', '../index.js', ...SERVER_LIBS] }],
    },
  },
  {
    // The store imports only the shared catalogue (src/common/); never core or anything above it.
    files: ['src/store/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['**/core/**', '**/dialects/**', '**/protocols/**', '**/http/**', '**/transport/**', '**/cli/**', '**/cluster/**', '**/config/**', '**/client/**', '../server.js', '../index.js'] }],
    },
  },
  {
    // What server and clients both may use: imports nothing of the project.
    files: ['src/common/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['../*/**', '../*.js'] }],
    },
  },
  {
    files: ['src/protocols/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['**/core/**', '**/dialects/**', '**/store/**', '**/http/**', '**/transport/**', '**/cli/**', '**/cluster/**', '**/config/**', 'node:fs', 'node:net', 'node:http', ...SERVER_LIBS] }],
    },
  },
);
