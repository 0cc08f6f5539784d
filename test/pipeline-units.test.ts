/**
 * pytest (pipeline/tests) through vitest, shard "units" (test/support/pytest.ts): the report fields, the S3 store, scene sets, schemas, the watchdog's units.
 */
import { describe, expect, it } from "vitest";
import { pytestFiles, pytestShard, SHARDS } from "./support/pytest.js";

pytestShard("units");

describe("the pytest shards", () => {
  it("hold every pytest file once", () => {
    const sharded = Object.values(SHARDS).flat();
    expect([...sharded].sort()).toEqual(pytestFiles());
  });
});
