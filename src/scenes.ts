/** The scenes of a request: a directory of MCS scene JSON files (or one file), each checked. */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { InputError } from "./errors.js";

export interface Scene {
  name: string;
  file: string;
  /** `goal.last_step`: what a scene costs when no earlier run says better. */
  lastStep: number;
  /** `goal.category` (e.g. "intuitive physics", "retrieval"); null when the file has none. */
  category: string | null;
}

export const SCENE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

export function loadScenes(scenesPath: string, shown: string): Scene[] {
  if (!existsSync(scenesPath)) {
    throw new InputError(
      "scenes",
      `${shown} does not exist: give a directory of scene .json files`,
    );
  }
  const files = statSync(scenesPath).isDirectory()
    ? readdirSync(scenesPath)
        .filter((f) => f.endsWith(".json"))
        .sort()
        .map((f) => path.join(scenesPath, f))
    : [scenesPath];
  if (files.length === 0) {
    throw new InputError("scenes", `${shown} holds no .json scene files`);
  }
  const seen = new Map<string, string>();
  return files.map((file) => {
    const scene = readScene(file, path.join(shown, path.relative(scenesPath, file)));
    const shownFile = path.join(shown, path.relative(scenesPath, file));
    const other = seen.get(scene.name);
    if (other)
      throw new InputError("scenes", `${shownFile} and ${other} are both named ${scene.name}`);
    seen.set(scene.name, shownFile);
    return scene;
  });
}

function readScene(file: string, shown: string): Scene {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new InputError("scenes", `${shown} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new InputError("scenes", `${shown} is not an MCS scene (expected a JSON object)`);
  }
  const { name = path.basename(file, ".json"), goal } = doc as { name?: unknown; goal?: unknown };
  if (typeof name !== "string" || !SCENE_NAME.test(name)) {
    throw new InputError("scenes", `${shown}: "name" must be letters, digits, ".", "-" or "_"`);
  }
  const { last_step: lastStep = 1, category = null } =
    (goal as { last_step?: unknown; category?: unknown } | undefined) ?? {};
  if (typeof lastStep !== "number" || !(lastStep > 0)) {
    throw new InputError("scenes", `${shown}: goal.last_step must be a positive number`);
  }
  // Only the report uses it: a category that is not a name is no category, not an error.
  const named = typeof category === "string" && category.trim() !== "";
  return { name, file, lastStep, category: named ? category.trim() : null };
}
