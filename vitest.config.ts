import path from "node:path";
import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * The files that take minutes, longest first: started first, they end with the others instead of
 * after them. Each brings up its own nodes, Ray and loopback AWS, so files run side by side; most
 * of their time is spent waiting on Ray, SSH and moto, not on the 2 cores.
 */
const SLOW_FIRST = [
  "multinode-budget.test.ts",
  "collect.test.ts",
  "pipeline-driver.test.ts",
  "multinode.test.ts",
  "action-long.test.ts",
  "watchdog.test.ts",
  "action-teardown.test.ts",
  "aws-provider.test.ts",
  "action.test.ts",
  "mcsteam-local.test.ts",
  "credentials.test.ts",
  "pipeline-runs.test.ts",
  "multinode-team.test.ts",
  "mcsteam-fixture.test.ts",
  "estimate-cli.test.ts",
  "bare-node.test.ts",
  "e2e-local.test.ts",
  "cloudformation.test.ts",
  "s3-scenes.test.ts",
  "s3-scenes-local.test.ts",
  "janitor.test.ts",
];

class SlowFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (file: TestSpecification) => {
      const i = SLOW_FIRST.indexOf(path.basename(file.moduleId));
      return i < 0 ? SLOW_FIRST.length : i;
    };
    return (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    maxWorkers: 5,
    sequence: { sequencer: SlowFirst },
    // The AWS SDK nags on Node 20 (the action itself runs on node24).
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true" },
  },
});
