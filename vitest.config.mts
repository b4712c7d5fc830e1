import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    // Integration tests drive real processes and load on a 2-core machine:
    // run files one at a time so they do not starve each other.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 30_000,
    reporters: ['default'],
  },
});
