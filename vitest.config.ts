import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Ray tests start real local Ray instances; the machine has 2 cores.
    fileParallelism: false,
    // The AWS SDK nags on Node 20 (the action itself runs on node24).
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
  },
});
