/**
 * The TypeScript types of plan.json and the run summary are hand-written; the formats are the
 * schema files in pipeline/mcs_pipeline/schemas/. These tests hold the two together where it
 * matters: for every object, the compiler checks that the key lists below are exactly the type's
 * keys, optional keys and nullable keys, and the tests check that they are exactly the schema's
 * properties, non-required properties and properties that admit null; the enumerations and the
 * version are the schema's. (A plan buildPlan writes is validated in plan.test.ts; summaries the
 * real driver writes in pipeline/tests/test_schemas.py.)
 */
import { describe, expect, it } from "vitest";
import type { PlanFile } from "../src/plan.js";
import type { NodeTypePrice } from "../src/prices.js";
import { METADATA_LEVELS, type Target } from "../src/request.js";
import { SCHEMAS, schemaProblem } from "../src/schemas.js";
import {
  FAILURE_CLASSES,
  RUN_STATES,
  SCENE_STATUSES,
  SCHEMA_VERSION,
  type AttemptRecord,
  type JournalChunk,
  type JournalRef,
  type NodeRecord,
  type PreviousRun,
  type RunSummary,
  type RunTotals,
  type SceneOutputs,
  type SceneResult,
} from "../src/summary.js";

type OptionalKeys<T> = { [K in keyof T]-?: object extends Pick<T, K> ? K : never }[keyof T];
type NullableKeys<T> = { [K in keyof T]-?: null extends T[K] ? K : never }[keyof T];

interface Shape {
  keys: string[];
  optional: string[];
  nullable: string[];
}

/** A type's keys, optional keys and nullable keys; the compiler rejects a missing or extra one. */
function shape<T>(
  keys: Record<keyof T, true>,
  optional: Record<OptionalKeys<T>, true>,
  nullable: Record<NullableKeys<T>, true>,
): Shape {
  const sorted = (o: object) => Object.keys(o).sort();
  return { keys: sorted(keys), optional: sorted(optional), nullable: sorted(nullable) };
}

interface SchemaNode {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  items?: SchemaNode;
  oneOf?: SchemaNode[];
  additionalProperties?: boolean | SchemaNode;
  $defs?: Record<string, SchemaNode>;
}

const PLAN = SCHEMAS["plan.schema.json"] as unknown as SchemaNode;
const SUMMARY = SCHEMAS["run-summary.schema.json"] as SchemaNode;

function resolve(root: SchemaNode, node: SchemaNode): SchemaNode {
  if (!node.$ref) return node;
  const name = /^#\/\$defs\/(.+)$/.exec(node.$ref)![1]!;
  return resolve(root, root.$defs![name]!);
}

/** The same three lists, read from an object schema. */
function schemaShape(root: SchemaNode, node: SchemaNode): Shape {
  const object = resolve(root, node);
  expect(object.additionalProperties).toBe(false);
  const properties = Object.entries(object.properties!);
  const admitsNull = (property: SchemaNode): boolean => {
    const p = resolve(root, property);
    return (
      [p.type].flat().includes("null") ||
      (p.enum ?? []).includes(null) ||
      p.const === null ||
      (p.oneOf ?? []).some(admitsNull)
    );
  };
  return {
    keys: properties.map(([key]) => key).sort(),
    optional: properties
      .map(([key]) => key)
      .filter((key) => !object.required!.includes(key))
      .sort(),
    nullable: properties
      .filter(([, property]) => admitsNull(property))
      .map(([key]) => key)
      .sort(),
  };
}

const t = true as const;

describe("the run summary's types are run-summary.schema.json's", () => {
  const defs = SUMMARY.$defs!;
  const cases: [string, SchemaNode, Shape][] = [
    [
      "RunSummary",
      SUMMARY,
      shape<RunSummary>(
        {
          schema_version: t,
          run_id: t,
          module: t,
          metadata: t,
          cluster_name: t,
          store: t,
          summary_key: t,
          state: t,
          started_at: t,
          updated_at: t,
          finished_at: t,
          totals: t,
          scenes: t,
          journal: t,
          previous: t,
          nodes: t,
          launch_phases: t,
          budget_usd: t,
          stop_reason: t,
        },
        { journal: t, previous: t, nodes: t, launch_phases: t, budget_usd: t, stop_reason: t },
        { cluster_name: t, finished_at: t, previous: t, budget_usd: t, stop_reason: t },
      ),
    ],
    [
      "RunTotals",
      defs.totals!,
      shape<RunTotals>({ total: t, succeeded: t, failed: t, pending: t, retried: t }, {}, {}),
    ],
    [
      "SceneResult",
      defs.scene!,
      shape<SceneResult>(
        {
          name: t,
          status: t,
          attempts: t,
          exit_code: t,
          failure_class: t,
          duration_s: t,
          node: t,
          expected_cost: t,
          resumed: t,
          outputs: t,
          log_excerpt: t,
          history: t,
          category: t,
        },
        { category: t },
        { exit_code: t, failure_class: t, duration_s: t, node: t, log_excerpt: t, category: t },
      ),
    ],
    [
      "AttemptRecord",
      defs.attempt!,
      shape<AttemptRecord>(
        {
          attempt: t,
          exit_code: t,
          failure_class: t,
          duration_s: t,
          node: t,
          started_at: t,
          log: t,
        },
        { log: t },
        { exit_code: t, failure_class: t, duration_s: t, node: t, started_at: t, log: t },
      ),
    ],
    [
      "SceneOutputs",
      defs.outputs!,
      shape<SceneOutputs>(
        { history: t, log: t, videos: t, versions: t },
        { versions: t },
        { history: t, log: t },
      ),
    ],
    [
      "NodeRecord",
      defs.node!,
      shape<NodeRecord>(
        {
          node_id: t,
          address: t,
          node_type: t,
          instance_type: t,
          head: t,
          spot: t,
          started_at: t,
          ended_at: t,
          usd_per_hour: t,
          price_source: t,
        },
        {},
        { node_type: t, instance_type: t, ended_at: t, usd_per_hour: t, price_source: t },
      ),
    ],
    ["PreviousRun", defs.previousRun!, shape<PreviousRun>({ run_id: t, summary_key: t }, {}, {})],
    ["JournalRef", defs.journal!, shape<JournalRef>({ prefix: t, next: t }, {}, {})],
    [
      "JournalChunk",
      defs.journalChunk!,
      shape<JournalChunk>(
        { schema_version: t, run_id: t, seq: t, updated_at: t, scenes: t },
        {},
        {},
      ),
    ],
  ];
  for (const [name, node, typed] of cases) {
    it(`${name}: the same keys, optional keys and nullable keys`, () => {
      expect(typed).toEqual(schemaShape(SUMMARY, node));
    });
  }

  it("the same statuses, failure classes, run states and version", () => {
    expect(defs.sceneStatus!.enum).toEqual([...SCENE_STATUSES]);
    expect(defs.failureClass!.enum).toEqual([...FAILURE_CLASSES, null]);
    expect(SUMMARY.properties!.state!.enum).toEqual([...RUN_STATES]);
    expect(SUMMARY.properties!.schema_version!.const).toBe(SCHEMA_VERSION);
    expect(defs.journalChunk!.properties!.schema_version!.const).toBe(SCHEMA_VERSION);
  });
});

describe("PlanFile is plan.schema.json's", () => {
  const props = PLAN.properties!;
  type PlanScene = PlanFile["scenes"][number];

  it("the same keys, optional keys and nullable keys, nested objects too", () => {
    const plan = shape<PlanFile>(
      {
        schema_version: t,
        run_id: t,
        module: t,
        metadata: t,
        target: t,
        cluster_name: t,
        ray_version: t,
        store: t,
        summary_key: t,
        latest_key: t,
        legacy_summary_key: t,
        names: t,
        retries: t,
        scene_timeout_s: t,
        resume: t,
        resources: t,
        run_script: t,
        eval_dir: t,
        history_required: t,
        scene_end_grace_s: t,
        node_services: t,
        mcs_config: t,
        scenes: t,
        node_types: t,
        budget_usd: t,
      },
      { node_types: t, scene_end_grace_s: t, node_services: t, budget_usd: t },
      { cluster_name: t, eval_dir: t, node_services: t, budget_usd: t },
    );
    expect(plan).toEqual(schemaShape(PLAN, PLAN));
    const names = shape<PlanFile["names"]>({ folder: t, movies_folder: t, prefix: t }, {}, {});
    expect(names).toEqual(schemaShape(PLAN, props.names!));
    const resources = shape<PlanFile["resources"]>({ num_cpus: t, num_gpus: t }, {}, {});
    expect(resources).toEqual(schemaShape(PLAN, props.resources!));
    const scene = shape<PlanScene>(
      { name: t, file: t, uri: t, expected_cost: t, category: t },
      { file: t, uri: t },
      { expected_cost: t, category: t },
    );
    expect(scene).toEqual(schemaShape(PLAN, props.scenes!.items!));
    const nodeType = shape<NodeTypePrice>(
      { instance_type: t, head: t, spot: t, usd_per_hour: t, price_source: t },
      {},
      { instance_type: t, usd_per_hour: t, price_source: t },
    );
    expect(nodeType).toEqual(
      schemaShape(PLAN, props.node_types!.additionalProperties as SchemaNode),
    );
    // Exactly one of them: a scene in the plan directory, or one the driver fetches from S3.
    expect(props.scenes!.items!.oneOf!.map((s) => s.required)).toEqual([["file"], ["uri"]]);
  });

  it("the same targets, metadata levels and version", () => {
    const targets: Record<Target, true> = { aws: t, local: t };
    expect([...props.target!.enum!].sort()).toEqual(Object.keys(targets).sort());
    expect(props.metadata!.enum).toEqual([...METADATA_LEVELS]);
    expect(props.schema_version!.const).toBe(1 satisfies PlanFile["schema_version"]);
  });
});

describe("schemaProblem", () => {
  it("names the field and where in the schema file it fails", () => {
    expect(schemaProblem({ seq: 1 }, "run-summary.schema.json", "journalChunk")).toBe(
      "schema_version is missing (run-summary.schema.json#/$defs/journalChunk/required)",
    );
    expect(
      schemaProblem(
        { schema_version: 1, run_id: "r", seq: 1, updated_at: "", scenes: [{ name: 3 }] },
        "run-summary.schema.json",
        "journalChunk",
      ),
    ).toMatch(
      /^scenes\[0\]\.\w+ is missing \(run-summary\.schema\.json#\/\$defs\/scene\/required\)$/,
    );
    expect(schemaProblem({ retries: -1 }, "plan.schema.json")).toBe(
      "schema_version is missing (plan.schema.json#/required)",
    );
  });
});
