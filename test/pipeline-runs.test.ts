/**
 * pytest (pipeline/tests) through vitest, shard "runs" (test/support/pytest.ts): attaching to a run, the budget gate, a clean interrupt, the summary's writes.
 */
import { pytestShard } from "./support/pytest.js";

pytestShard("runs");
