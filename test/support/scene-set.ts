/** An s3:// scene set for tests: scenes stored in moto, and a search for scene files left behind. */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { createBucket, putObject } from "./moto.js";

/** In every scene and nowhere else: a file holding it is a scene, whatever its name. */
export const MARKER = "private-scene-marker";

/** `count` small scenes of the demo module in a new bucket, under `prefix`; their names. */
export async function storeScenes(
  url: string,
  bucket: string,
  prefix: string,
  count: number,
): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `s3_scene_${String(i).padStart(3, "0")}`);
  await createBucket(url, bucket);
  for (let i = 0; i < count; i += 25) {
    await Promise.all(
      names.slice(i, i + 25).map((name, j) => {
        const goal = { last_step: 1 + ((i + j) % 7), category: "retrieval", action_list: [] };
        const doc = { name, version: "2", goal, [MARKER]: `${MARKER}-${name}` };
        return putObject(url, bucket, `${prefix}/${name}.json`, JSON.stringify(doc));
      }),
    );
  }
  return names;
}

/**
 * Every file under `dir` whose text holds a scene (the marker) or that is named like one
 * ([] when `dir` does not exist).
 */
export function sceneFilesUnder(dir: string, names: string[]): string[] {
  if (!existsSync(dir)) return [];
  const wanted = new Set(names.map((n) => `${n}.json`));
  const found: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const file = path.join(d, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (!entry.isFile()) continue;
      else if (wanted.has(entry.name)) found.push(file);
      else if (statSync(file).size < 200_000_000 && readFileSync(file).includes(MARKER))
        found.push(file);
    }
  };
  walk(dir);
  return found;
}
