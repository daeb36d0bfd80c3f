import { defineConfig } from 'vitest/config';

export default defineConfig({
  // `datagrant` imported by the Pulumi package resolves to the TypeScript sources: no build needed.
  resolve: { conditions: ['datagrant-source'] },
  ssr: { resolve: { conditions: ['datagrant-source'] } },
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Tests that start services (moto, PostgreSQL) do so per file on free ports; two cores.
    maxWorkers: 2,
    // A skipped test is not a passed test: fail the run if any test is skipped or todo.
    allowOnly: false,
  },
});
