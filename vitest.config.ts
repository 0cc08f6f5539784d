import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Ray tests start real local Ray instances; the machine has 2 cores.
    fileParallelism: false,
  },
});
