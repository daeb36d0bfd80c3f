import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'packages/*/dist/', 'packages/*/node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['bin/**/*.js', 'bench/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', URL: 'readonly', Buffer: 'readonly', performance: 'readonly' } },
  },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The pure core never does I/O: no file system, network, AWS SDK or database driver.
    files: ['src/spec/**', 'src/compile/**', 'src/plan/**', 'src/render/**', 'src/core/**'],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [
          { group: ['node:fs', 'node:fs/*', 'fs', 'node:net', 'node:http', 'node:https', 'node:child_process', '@aws-sdk/*', 'pg', 'better-sqlite3'], message: 'The pure core does no I/O (STYLE.md).' },
        ],
      }],
      'no-restricted-syntax': ['error',
        { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'Pass `now` in; the pure core never reads the clock.' },
        { selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']", message: 'Pass `now` in; the pure core never reads the clock.' },
        { selector: "MemberExpression[object.name='process'][property.name='env']", message: 'The pure core never reads the environment; pass it in.' },
      ],
    },
  },
);
