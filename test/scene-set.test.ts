/**
 * An s3:// scene set, planned: listed with ListObjectsV2 (every page) against a moto server,
 * checked as far as the listing allows, never downloaded; the plan names each scene's S3 URI and
 * holds no scene file. Without credentials, one clear line for `scenes`.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listS3Scenes, type S3Access } from "../src/aws/scene-set.js";
import { planRun } from "../src/engine.js";
import { InputError } from "../src/errors.js";
import { describePlan, type PlanFile } from "../src/plan.js";
import { parseRequest } from "../src/request.js";
import { schemaProblem } from "../src/schemas.js";
import { awsTarget } from "../src/targets/aws.js";
import { localTarget } from "../src/targets/local.js";
import { createBucket, putObject, startMoto, TEST_KEYS, type MotoServer } from "./support/moto.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

let moto: MotoServer;
const saved = { ...process.env };
const access: S3Access = { region: "us-east-1", credentials: async () => TEST_KEYS };
const scene = (name: string, lastStep = 5) =>
  JSON.stringify({ name, goal: { last_step: lastStep } });

beforeAll(async () => {
  moto = await startMoto();
  // The SDK (and the driver's boto3) take the endpoint from here, as with any S3-compatible store.
  process.env.AWS_ENDPOINT_URL = moto.url;
  process.env.AWS_ACCESS_KEY_ID = TEST_KEYS.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY = TEST_KEYS.secretAccessKey;
}, 60_000);
afterAll(async () => {
  process.env = saved;
  await moto?.stop();
  removeTemps();
});

let buckets = 0;
async function bucketWith(objects: Record<string, string>): Promise<string> {
  const bucket = `scenes-${process.pid}-${++buckets}`;
  await createBucket(moto.url, bucket);
  await Promise.all(Object.entries(objects).map(([k, v]) => putObject(moto.url, bucket, k, v)));
  return bucket;
}

async function listingError(uri: string, credentials = access): Promise<string> {
  const error = await listS3Scenes(uri, credentials).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(InputError);
  expect((error as InputError).input).toBe("scenes");
  return (error as Error).message;
}

describe("listS3Scenes", () => {
  it("lists every page: names, URIs, count and total size, sorted by key", async () => {
    const objects: Record<string, string> = {};
    for (let i = 0; i < 20; i++)
      objects[`eval/set/s_${String(i).padStart(2, "0")}.json`] = scene(`s_${i}`);
    objects["eval/set/deeper/t_1.json"] = scene("t_1");
    objects["eval/set/README.md"] = "not a scene";
    objects["eval/set/"] = ""; // a console "folder"
    objects["eval/settled/x.json"] = scene("x"); // beside the folder, not in it
    const bucket = await bucketWith(objects);
    // Without the trailing slash it is the same folder.
    for (const uri of [`s3://${bucket}/eval/set/`, `s3://${bucket}/eval/set`]) {
      const set = await listS3Scenes(uri, access, 7); // 3 pages of 7, then 1
      expect(set.uri).toBe(`s3://${bucket}/eval/set/`);
      expect(set.scenes.map((s) => s.name)).toEqual([
        "t_1", // deeper/ sorts first
        ...Array.from({ length: 20 }, (_, i) => `s_${String(i).padStart(2, "0")}`),
      ]);
      expect(set.scenes[0]!.uri).toBe(`s3://${bucket}/eval/set/deeper/t_1.json`);
      const bytes = Object.entries(objects)
        .filter(([k]) => k.startsWith("eval/set/") && k.endsWith(".json"))
        .reduce((sum, [, v]) => sum + Buffer.byteLength(v), 0);
      expect(set.bytes).toBe(bytes);
    }
    const whole = await listS3Scenes(`s3://${bucket}`, access);
    expect(whole.scenes).toHaveLength(22);
  });

  it("refuses an empty set, empty files, duplicate and bad names with one line", async () => {
    const bucket = await bucketWith({
      "empty/notes.txt": "x",
      "zero/a.json": "",
      "dup/a/same.json": scene("same"),
      "dup/b/same.json": scene("same"),
      "bad/has space.json": scene("x"),
    });
    expect(await listingError(`s3://${bucket}/empty/`)).toBe(
      `s3://${bucket}/empty/ holds no .json scene files (only 1 other objects)`,
    );
    expect(await listingError(`s3://${bucket}/nothing/`)).toMatch(/holds no \.json scene files$/);
    expect(await listingError(`s3://${bucket}/zero/`)).toBe(
      `s3://${bucket}/zero/a.json is empty (0 bytes)`,
    );
    expect(await listingError(`s3://${bucket}/dup/`)).toBe(
      `s3://${bucket}/dup/b/same.json and s3://${bucket}/dup/a/same.json are both named same`,
    );
    expect(await listingError(`s3://${bucket}/bad/`)).toMatch(/has space\.json: a scene's name/);
    expect(await listingError("s3://no-such-bucket-here/x/")).toMatch(/there is no bucket/);
    expect(await listingError("s3://")).toMatch(
      /is not an S3 folder: write s3:\/\/bucket\/prefix\//,
    );
  });

  it("says clearly when it has no credentials", async () => {
    const none: S3Access = {
      region: "us-east-1",
      credentials: () =>
        Promise.reject(
          Object.assign(new Error("Could not load credentials from any providers"), {
            name: "CredentialsProviderError",
          }),
        ),
    };
    expect(await listingError("s3://any-bucket/scenes/", none)).toMatch(
      /^s3:\/\/any-bucket\/scenes\/ could not be listed without AWS credentials/,
    );
  });
});

describe("planning an s3:// scene set", () => {
  it("puts each scene's URI in plan.json and no scene file in the plan", async () => {
    const names = ["a_long", "b_short"];
    const bucket = await bucketWith({
      "set/a_long.json": scene("a_long", 90),
      "set/b_short.json": scene("b_short", 3),
    });
    const uri = `s3://${bucket}/set/`;
    const out = makeTemp("mcs-s3plan-");
    const req = parseRequest({ module: "demo", scenes: uri, dryRun: "true", outDir: out }, "local");
    const env = { toolRoot: REPO, workspace: REPO, venvDir: "", log: () => undefined };
    const plan = await planRun(req, env, localTarget(out, 1), "20261126-000000-0001");
    const file = JSON.parse(readFileSync(path.join(plan.dir, "plan.json"), "utf8")) as PlanFile;
    expect(schemaProblem(file, "plan.schema.json")).toBeUndefined();
    expect(file.scenes).toEqual(
      names.map((n) => ({ name: n, uri: `${uri}${n}.json`, expected_cost: null, category: null })),
    );
    expect(readdirSync(path.join(plan.dir, "scenes"))).toEqual([]);
    expect(readFileSync(path.join(plan.dir, "scenes.txt"), "utf8")).toBe(
      "a_long.json\nb_short.json\n",
    );
    expect(describePlan(plan)).toContain(`scenes:        2 in ${uri} (`);
    expect(existsSync(path.join(plan.dir, "pipeline", "mcs_pipeline", "scene_set.py"))).toBe(true);
  });

  it("the AWS target without a role (a dry run) says the set cannot be listed, and why", async () => {
    const target = awsTarget({
      roleArn: "",
      region: "us-east-1",
      durationSeconds: 900,
      keepCluster: false,
      workDir: makeTemp("mcs-s3plan-"),
    });
    const error = await target.listScenes!("s3://private-set/eval/", "run-1").catch((e) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as InputError).input).toBe("scenes");
    expect((error as Error).message).toBe(
      "s3://private-set/eval/ could not be listed without AWS credentials: give role-to-assume (with id-token: write), or a scene directory in the repository",
    );
  });
});
