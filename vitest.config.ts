import path from "node:path";
import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * The files that take more than half a minute, longest first (as measured with 5 at once on 2
 * cores): started first, they end with the others instead of after them. Each brings up its own
 * nodes, Ray and loopback AWS, so files run side by side; what they wait on is Ray, SSH and moto.
 */
const SLOWEST_FIRST = [
  "pipeline-runs.test.ts", // ~300 s
  "multinode-budget.test.ts", // ~275 s
  "collect.test.ts",
  "multinode.test.ts",
  "action-long.test.ts",
  "action-teardown.test.ts",
  "pipeline-driver.test.ts",
  "aws-provider.test.ts",
  "action.test.ts",
  "mcsteam-local.test.ts",
  "watchdog.test.ts",
  "s3-scenes-local.test.ts",
  "mcsteam-fixture.test.ts",
  "cloudformation.test.ts",
  "e2e-local.test.ts",
  "multinode-team.test.ts",
  "bare-node.test.ts",
  "estimate-cli.test.ts",
  "janitor.test.ts",
  "credentials.test.ts",
  "preflight.test.ts",
  "s3-scenes.test.ts",
  "report.test.ts",
  "cli-input.test.ts",
  "pipeline-units.test.ts",
  "act.test.ts",
  "fixtures.test.ts", // ~35 s
];

class SlowFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (file: TestSpecification) => {
      const i = SLOWEST_FIRST.indexOf(path.basename(file.moduleId));
      return i < 0 ? SLOWEST_FIRST.length : i;
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
