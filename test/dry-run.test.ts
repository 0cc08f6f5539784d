/**
 * The action's dry run, as the runner runs it (`node dist/main/index.js` on Node 24): the plan is
 * checked with Ray's own cluster schema (the pinned Ray in the venv; no cluster, no cloud API)
 * and shown as the job summary. AWS_ENDPOINT_URL points at a closed loopback port and there is no
 * OIDC endpoint, so any cloud call would fail the step.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { MAX_SCENE_ROWS, renderPlanSummary } from "../src/action/plan-summary.js";
import type { Plan } from "../src/plan.js";
import { cleanupActions, runAction, type ActionRun } from "./support/runner.js";
import { copyWorkspace, makeTemp, removeTemps } from "./support/workspace.js";

const NO_AWS = "http://127.0.0.1:9"; // discard: nothing listens
const TIMEOUT_MS = 120_000;

afterAll(async () => {
  await cleanupActions();
  removeTemps();
});

function dryRun(workspace: string, inputs: Record<string, string> = {}): Promise<ActionRun> {
  return runAction("main", {
    workspace,
    inputs: { module: "demo", metadata: "level1", "dry-run": "true", ...inputs },
    oidc: null,
    awsEndpoint: NO_AWS,
    runId: "4242",
    timeoutMs: TIMEOUT_MS,
  });
}

const context = (run: ActionRun) => `exit ${run.code}\n${run.stdout}\n${run.stderr}`;

describe("a dry run", () => {
  it(
    "the demo YAML's spot workers, uncommented, pass Ray's schema and show as spot in the plan",
    async () => {
      const ws = copyWorkspace();
      const file = path.join(ws, "autoscaler", "ray_demo_aws.yaml");
      const text = readFileSync(file, "utf8");
      const block = /^ {2}# ray\.worker\.spot:\n(?: {2}# {2}.*\n)+/m.exec(text);
      expect(block, "the commented spot worker type in the demo YAML").not.toBeNull();
      const uncommented = block![0].replace(/^ {2}# /gm, "  ");
      writeFileSync(file, text.replace(block![0], uncommented));
      const types = (parse(readFileSync(file, "utf8")) as { available_node_types: object })
        .available_node_types;
      expect(types).toHaveProperty(
        ["ray.worker.spot", "node_config", "InstanceMarketOptions", "MarketType"],
        "spot",
      );

      const run = await dryRun(ws);
      expect(run.code, context(run)).toBe(0);
      expect(run.summary).toContain("| ray.worker.spot | m5.large (spot) | 0–4 | 2 CPU | $0.096 |");
      expect(run.summary).toContain("| ray.worker.default | m5.large | 0–2 | 2 CPU |");
    },
    TIMEOUT_MS,
  );

  it(
    "results-bucket (the setup stack's bucket) is where the run's results and summary go",
    async () => {
      const run = await dryRun(copyWorkspace(), { "results-bucket": "stack-results" });
      expect(run.code, context(run)).toBe(0);
      expect(run.outputs["results-url"]).toMatch(/\/s3\/buckets\/stack-results\?region=us-east-1/);
      expect(run.summary).toContain("| results | `s3://stack-results/demo-eval/` ([console](");
    },
    TIMEOUT_MS,
  );

  it(
    "validates the cluster YAML with Ray's schema and writes the plan as the job summary",
    async () => {
      const run = await dryRun(copyWorkspace());
      expect(run.code, context(run)).toBe(0);
      expect(run.annotations, context(run)).toEqual([]);
      expect(run.state).toEqual({});
      const name = run.outputs["cluster-name"]!;
      expect(name).toMatch(/^mcs-demo-level1-4242-1/);
      expect(run.outputs).toEqual({
        "cluster-name": name,
        "run-id": "4242-1-eval",
        status: "planned",
        total: "9",
        "results-url":
          "https://s3.console.aws.amazon.com/s3/buckets/mcs-demo-results?region=us-east-1&prefix=demo-eval%2F",
      });
      expect(run.stdout).toMatch(/Ray [\d.]+ is already installed/);
      expect(run.stdout).not.toMatch(/::group::ray |AWS credentials/);

      const summary = run.summary;
      expect(summary).toContain("## Dry run: demo level1 — the plan is valid, nothing was started");
      expect(summary).toContain("**9 scenes**");
      expect(summary).toContain(`| cluster | \`${name}\` (aws provider, us-east-1, zones `);
      expect(summary).toContain("| results | `s3://mcs-demo-results/demo-eval/` ([console](");
      expect(summary).toMatch(
        /\| run summary \| `demo-eval\/demo-eval_level1_demo_4242-1.*_run-summary\.json` \|/,
      );
      expect(summary).toContain("| retries | 2 per scene");
      expect(summary).toContain("| timeout | 10 min per scene |");
      expect(summary).toContain("| per scene | 1 CPU, 0 GPU |");
      // Node types from the rendered YAML.
      expect(summary).toContain("| ray.head.default (head) | m5.large | – | 2 CPU | $0.096 |");
      expect(summary).toContain("| ray.worker.default | m5.large | 0–2 | 2 CPU | $0.096 |");
      // Scenes longest first (goal.last_step).
      const rows = [...summary.matchAll(/^\| (\d+) \| (\S+) \| (\d+) \|$/gm)].map((m) => ({
        n: Number(m[1]),
        scene: m[2],
        steps: Number(m[3]),
      }));
      expect(rows.map((r) => r.n)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(rows[0]).toEqual({ n: 1, scene: "demo_multi_retrieval_0001_01", steps: 450 });
      expect(rows.at(-1)).toEqual({ n: 9, scene: "demo_agents_0001_01", steps: 90 });
      const steps = rows.map((r) => r.steps);
      expect(steps).toEqual([...steps].sort((a, b) => b - a));
    },
    TIMEOUT_MS,
  );

  it(
    "fails, naming the module, when the cluster YAML does not match Ray's schema",
    async () => {
      const workspace = copyWorkspace();
      const file = path.join(workspace, "autoscaler/ray_demo_aws.yaml");
      const cluster = parse(readFileSync(file, "utf8")) as Record<string, unknown>;
      cluster.max_workerz = 3; // a typo Ray's schema refuses (no additional properties)
      writeFileSync(file, stringify(cluster));
      const run = await dryRun(workspace);
      expect(run.code, context(run)).toBe(1);
      const errors = run.annotations.filter((a) => a.command === "error");
      expect(errors, context(run)).toHaveLength(1);
      expect(errors[0]!.message).toMatch(
        /^input module: the cluster YAML of module demo does not match Ray's cluster schema: .*max_workerz/,
      );
      expect(run.outputs.status).toBeUndefined();
      expect(run.summary).toBe("");
    },
    TIMEOUT_MS,
  );
});

describe("the dry run's job summary", () => {
  it("lists at most MAX_SCENE_ROWS scenes, longest first, and says how many more", () => {
    const count = MAX_SCENE_ROWS + 234;
    const plan = {
      run_id: "1-1-eval",
      module: "big",
      metadata: "oracle",
      cluster_name: "mcs-big-oracle-1-1-eval",
      ray_version: "2.60.0",
      store: "s3://bucket",
      summary_key: "f/p_1-1-eval_run-summary.json",
      names: { folder: "f", movies_folder: "f", prefix: "p" },
      retries: 0,
      scene_timeout_s: 5400,
      resume: true,
      resources: { num_cpus: 4, num_gpus: 1 },
      scenes: Array.from({ length: count }, (_, i) => ({
        name: `scene_${String(i).padStart(5, "0")}`,
        file: `scenes/scene_${i}.json`,
        expected_cost: (i * 7919) % 1000,
      })),
      dir: makeTemp("mcs-plan-"), // no cluster.yaml: no node types
    } as unknown as Plan;
    const summary = renderPlanSummary(plan, "eu-west-1");
    const rows = [...summary.matchAll(/^\| (\d+) \| (\S+) \| (\d+) \|$/gm)];
    expect(rows).toHaveLength(MAX_SCENE_ROWS);
    const costs = rows.map((m) => Number(m[3]));
    expect(costs).toEqual([...costs].sort((a, b) => b - a));
    expect(costs[0]).toBe(999);
    expect(summary).toContain(`…and 234 more scenes`);
    expect(summary).toContain(`**${count} scenes**`);
    expect(summary).toContain("| timeout | 90 min per scene |");
    expect(summary).toContain("| per scene | 4 CPU, 1 GPU |");
    expect(summary).toContain(
      "| resume | yes: scenes that succeeded in the latest run are skipped |",
    );
    expect(summary).toContain("region=eu-west-1");
    expect(summary).not.toContain("Node types");
    expect(Buffer.byteLength(summary)).toBeLessThan(1024 * 1024);
  });
});
