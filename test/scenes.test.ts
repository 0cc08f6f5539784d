import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadScenes } from "../src/scenes.js";
import { expectInputError, makeTemp, REPO, removeTemps } from "./support/workspace.js";

afterAll(removeTemps);

const SUBSET = path.join(REPO, "scenes/subset");
const subsetFiles = () =>
  readdirSync(SUBSET)
    .filter((f) => f.endsWith(".json"))
    .sort();
const readJson = (file: string) =>
  JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;

/** A temp scenes dir holding `files` (name → JSON value or raw text). */
function scenesDir(files: Record<string, unknown>): string {
  const dir = makeTemp("mcs-scenes-");
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(
      path.join(dir, name),
      typeof content === "string" ? content : JSON.stringify(content),
    );
  }
  return dir;
}

const scene = (name: string, lastStep = 10) => ({ name, goal: { last_step: lastStep } });

describe("loadScenes", () => {
  it("reads the subset: every .json file, sorted, with its name and goal.last_step", () => {
    const files = subsetFiles();
    expect(files.length).toBe(9);
    const scenes = loadScenes(SUBSET, "scenes/subset");
    expect(scenes.map((s) => s.file)).toEqual(files.map((f) => path.join(SUBSET, f)));
    for (const s of scenes) {
      const doc = readJson(s.file);
      expect(s.name).toBe(doc.name);
      expect(s.name).toBe(path.basename(s.file, ".json"));
      expect(s.lastStep).toBe((doc.goal as { last_step: number }).last_step);
      expect(s.lastStep).toBeGreaterThan(0);
    }
    // The subset's scenes differ in cost, which is what longest-first scheduling needs.
    expect(new Set(scenes.map((s) => s.lastStep)).size).toBeGreaterThan(1);
  });

  it("reads a single scene file", () => {
    const file = path.join(SUBSET, subsetFiles()[0]!);
    const scenes = loadScenes(file, "one.json");
    expect(scenes).toEqual([
      {
        name: readJson(file).name,
        file,
        lastStep: (readJson(file).goal as { last_step: number }).last_step,
        category: (readJson(file).goal as { category: string }).category,
      },
    ]);
  });

  it("reads goal.category; none, or one that is not a name, is null", () => {
    const dir = scenesDir({
      "a.json": { name: "a", goal: { category: "intuitive physics" } },
      "b.json": { name: "b", goal: { last_step: 3 } },
      "c.json": { name: "c", goal: { category: 7 } },
      "d.json": { name: "d", goal: { category: "  " } },
    });
    expect(loadScenes(dir, "s").map((s) => [s.name, s.category])).toEqual([
      ["a", "intuitive physics"],
      ["b", null],
      ["c", null],
      ["d", null],
    ]);
  });

  it("ignores files that are not .json", () => {
    const dir = scenesDir({ "b.json": scene("b"), "a.json": scene("a", 3), "README.md": "# x" });
    mkdirSync(path.join(dir, "sub"));
    expect(loadScenes(dir, "s").map((s) => [s.name, s.lastStep])).toEqual([
      ["a", 3],
      ["b", 10],
    ]);
  });

  it("takes the name from the file when the scene has none, and cost 1 without goal.last_step", () => {
    const dir = scenesDir({ "unnamed_scene.json": { goal: {} }, "no_goal.json": {} });
    expect(loadScenes(dir, "s").map((s) => [s.name, s.lastStep])).toEqual([
      ["no_goal", 1],
      ["unnamed_scene", 1],
    ]);
  });

  it("uses the scene's own name, not the file's", () => {
    const dir = scenesDir({ "file_name.json": scene("inner_name") });
    expect(loadScenes(dir, "s")[0]!.name).toBe("inner_name");
  });

  it("accepts a fractional last_step", () => {
    const dir = scenesDir({ "a.json": scene("a", 2.5) });
    expect(loadScenes(dir, "s")[0]!.lastStep).toBe(2.5);
  });
});

describe("loadScenes: bad scenes throw an InputError for --scenes", () => {
  it("a path that does not exist, shown as the user gave it", () => {
    const missing = path.join(makeTemp(), "nowhere");
    expectInputError(
      () => loadScenes(missing, "scenes/nowhere"),
      "scenes",
      /^scenes\/nowhere does not exist: give a directory of scene \.json files$/,
    );
  });

  it("an empty directory", () => {
    expectInputError(
      () => loadScenes(makeTemp(), "scenes/empty"),
      "scenes",
      /^scenes\/empty holds no \.json scene files$/,
    );
  });

  it("a directory without .json files", () => {
    const dir = scenesDir({ "scene.txt": "{}", "notes.JSONL": "{}" });
    expectInputError(() => loadScenes(dir, "mine"), "scenes", /^mine holds no \.json scene files$/);
  });

  it("invalid JSON names the file", () => {
    const dir = makeTemp("mcs-scenes-");
    cpSync(SUBSET, dir, { recursive: true });
    writeFileSync(path.join(dir, "demo_broken_0001_01.json"), '{"name": "demo_broken_0001_01",');
    expectInputError(
      () => loadScenes(dir, "my-scenes"),
      "scenes",
      /^my-scenes\/demo_broken_0001_01\.json is not valid JSON: \S/,
    );
  });

  it("invalid JSON in a single file names that file", () => {
    const dir = scenesDir({ "x.json": "not json" });
    expectInputError(
      () => loadScenes(path.join(dir, "x.json"), "scenes/x.json"),
      "scenes",
      /^scenes\/x\.json is not valid JSON/,
    );
  });

  it.each([
    ["an array", "[]"],
    ["a string", '"scene"'],
    ["null", "null"],
  ])("JSON that is %s, not an object", (_what, text) => {
    const dir = scenesDir({ "x.json": text });
    expectInputError(
      () => loadScenes(dir, "s"),
      "scenes",
      /^s\/x\.json is not an MCS scene \(expected a JSON object\)$/,
    );
  });

  it.each([["../escape"], ["a b"], ["a/b"], [""], [".hidden"], [42]])(
    "a scene name that cannot be a file name: %j",
    (name) => {
      const dir = scenesDir({ "x.json": { name, goal: { last_step: 5 } } });
      expectInputError(
        () => loadScenes(dir, "s"),
        "scenes",
        /^s\/x\.json: "name" must be letters, digits, "\.", "-" or "_"$/,
      );
    },
  );

  it.each([[0], [-3], ["ten"], [true]])("goal.last_step %j", (lastStep) => {
    const dir = scenesDir({ "x.json": { name: "x", goal: { last_step: lastStep } } });
    expectInputError(
      () => loadScenes(dir, "s"),
      "scenes",
      /^s\/x\.json: goal\.last_step must be a positive number$/,
    );
  });

  it("two files with the same scene name", () => {
    const dir = scenesDir({ "one.json": scene("same"), "two.json": scene("same") });
    const error = expectInputError(() => loadScenes(dir, "s"), "scenes", /are both named same$/);
    expect(error.message).toContain("one.json");
    expect(error.message).toContain("two.json");
  });
});
