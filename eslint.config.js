import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'dist-check/**', 'node_modules/**', 'muster-data/**', 'coverage/**'] },
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
    files: ['src/client/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['**/core/**', '**/dialects/**', '**/store/**', '**/http/**', '**/transport/**', '**/cli/**'] }],
    },
  },
  {
    files: ['src/protocols/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: ['**/core/**', '**/dialects/**', '**/store/**', '**/http/**', '**/transport/**', '**/cli/**', 'node:fs', 'node:net', 'node:http'] }],
    },
  },
);
