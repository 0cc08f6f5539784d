/** Each node type's hourly price for the cost estimate: the module's own, else the dated list. */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadModule } from "../src/module.js";
import { nodeTypePrices } from "../src/prices.js";
import { copyWorkspace, expectInputError, removeTemps } from "./support/workspace.js";

afterAll(removeTemps);

/** The demo module with its spot workers uncommented and `ini` appended to configs/demo_aws.ini. */
function demo(ini = "", yaml = (text: string) => text) {
  const ws = copyWorkspace(["configs", "autoscaler", "deploy_files"]);
  const exec = path.join(ws, "configs/demo_aws.ini");
  writeFileSync(exec, readFileSync(exec, "utf8") + ini);
  const file = path.join(ws, "autoscaler/ray_demo_aws.yaml");
  const spot = readFileSync(file, "utf8").replace(/^ {2}# ( {2}|ray\.worker\.spot)/gm, "  $1");
  writeFileSync(file, yaml(spot));
  return () => loadModule(ws, "demo", "level2");
}

const LIST = "on-demand list, us-east-1, 2026-06";

describe("nodeTypePrices", () => {
  it("prices the demo's m5.large nodes from the dated list, spot marked", () => {
    expect(nodeTypePrices(demo()())).toEqual({
      "ray.head.default": {
        instance_type: "m5.large",
        head: true,
        spot: false,
        usd_per_hour: 0.096,
        price_source: LIST,
      },
      "ray.worker.default": {
        instance_type: "m5.large",
        head: false,
        spot: false,
        usd_per_hour: 0.096,
        price_source: LIST,
      },
      "ray.worker.spot": {
        instance_type: "m5.large",
        head: false,
        spot: true,
        usd_per_hour: 0.096,
        price_source: LIST,
      },
    });
  });

  it("takes the module's price by node type first, then by instance type", () => {
    const prices = nodeTypePrices(demo("\n[prices]\nray.worker.spot = 0.035\nm5.large = 0.1\n")());
    const source = "configs/demo_aws.ini [prices]";
    expect(prices["ray.worker.spot"]).toMatchObject({ usd_per_hour: 0.035, price_source: source });
    expect(prices["ray.head.default"]).toMatchObject({ usd_per_hour: 0.1, price_source: source });
  });

  it("has no price for a region or instance type the list lacks", () => {
    const prices = nodeTypePrices(
      demo("", (y) => y.replace("region: us-east-1", "region: eu-west-1"))(),
    );
    expect(prices["ray.head.default"]).toMatchObject({ usd_per_hour: null, price_source: null });
  });

  it("a price that is not a number is one error line naming the file", () => {
    expectInputError(
      demo("\n[prices]\nm5.large = cheap\n"),
      "module",
      /^configs\/demo_aws\.ini \[prices\]: m5\.large="cheap" is not a non-negative number$/,
    );
  });
});
