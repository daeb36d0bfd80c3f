import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const IO_MODULES = ['node:fs', 'node:fs/*', 'fs', 'node:net', 'node:http', 'node:https', 'node:child_process', '@aws-sdk/*', 'pg', 'better-sqlite3'];
IO_MODULES.push('mysql2', 'mysql2/*');

/**
 * One ESLint block per layer: imports of the folders above it are errors (any depth of ../), and
 * for the pure core also I/O modules, the clock and the environment.
 */
function layers(defs) {
  return defs.map(({ files, below, forbidden, io }) => ({
    files,
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            ...(io ? [{ group: IO_MODULES, message: 'The pure core does no I/O (STYLE.md).' }] : []),
            { regex: `^(\\.\\./)+(${forbidden.join('|')})/`, message: `${below} must not import from ${forbidden.join(', ')} (layers: ARCHITECTURE.md).` },
          ],
        },
      ],
      ...(io
        ? {
            'no-restricted-syntax': [
              'error',
              { selector: "NewExpression[callee.name='Date'][arguments.length=0]", message: 'Pass `now` in; the pure core never reads the clock.' },
              {
                selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']",
                message: 'Pass `now` in; the pure core never reads the clock.',
              },
              { selector: "MemberExpression[object.name='process'][property.name='env']", message: 'The pure core never reads the environment; pass it in.' },
            ],
          }
        : {}),
    },
  }));
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'packages/*/dist/', 'packages/*/node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  // Type-aware rules for TypeScript: a promise nobody awaits, a misused one, unsafe any.
  ...tseslint.configs.recommendedTypeChecked.map((c) => ({ ...c, files: ['**/*.ts'] })),
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: { allowDefaultProject: ['*.ts'] }, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      // Interface methods (stores, drivers) are async by contract even where one implementation
      // needs no await.
      '@typescript-eslint/require-await': 'off',
    },
  },
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
    // Tests and benchmarks read JSON answers (SCIM bodies, CLI --json output, catalog rows) whose
    // shape the assertions check; typing every one of them would add casts, not safety.
    files: ['test/**/*.ts', 'packages/*/test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/no-base-to-string': 'off',
    },
  },
  // Layers (ARCHITECTURE.md): each folder may import only what lies below it.
  ...layers([
    {
      // The pure core never does I/O: no file system, network, AWS SDK or database driver.
      files: ['src/spec/**', 'src/compile/**', 'src/plan/**', 'src/render/**', 'src/core/**'],
      below: 'the pure core',
      forbidden: ['app', 'apply', 'backends', 'cli', 'scim', 'serve', 'store'],
      io: true,
    },
    // The resource model is pure too, and sits below the compiler and the drivers alike.
    {
      files: ['src/model/**'],
      below: 'the resource model',
      forbidden: ['app', 'apply', 'backends', 'cli', 'compile', 'plan', 'render', 'scim', 'serve', 'spec', 'store'],
      io: true,
    },
    { files: ['src/backends/**'], below: 'the drivers', forbidden: ['app', 'apply', 'cli', 'compile', 'plan', 'render', 'scim', 'serve', 'store'] },
    { files: ['src/store/**'], below: 'the state store', forbidden: ['app', 'apply', 'backends', 'cli', 'compile', 'plan', 'render', 'scim', 'serve'] },
    { files: ['src/apply/**'], below: 'apply', forbidden: ['app', 'cli', 'compile', 'scim', 'serve'] },
    { files: ['src/scim/**'], below: 'SCIM', forbidden: ['app', 'apply', 'backends', 'cli', 'serve'] },
    { files: ['src/app/**'], below: 'the app layer', forbidden: ['cli', 'serve'] },
    { files: ['src/serve/**'], below: 'serve', forbidden: ['cli'] },
  ]),
);
