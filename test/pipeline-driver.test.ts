/**
 * pytest (pipeline/tests) through vitest, shard "driver" (test/support/pytest.ts): the driver run by run on a real local Ray: results, retries, resume, interrupts.
 */
import { pytestShard } from "./support/pytest.js";

pytestShard("driver");
