/**
 * src/ keeps one direction of data flow (DESIGN §3): no module imports, through any chain, a module
 * that imports it back. Type-only imports count: they tie the two modules' shapes together too.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { REPO } from "./support/workspace.js";

/** Every relative import of each .ts file under `root`: file → the files it imports. */
export function importGraph(root: string): Map<string, string[]> {
  const files = readdirSync(root, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => path.join(root, f));
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const text = readFileSync(file, "utf8");
    const targets = [...text.matchAll(/^(?:import|export)\b[^;]*?\bfrom\s+"(\.[^"]+)"/gms)].map(
      (m) => path.resolve(path.dirname(file), m[1]!.replace(/\.js$/, ".ts")),
    );
    graph.set(file, targets);
  }
  return graph;
}

/** The first cycle found, as a list of files (the first repeated at the end); none: []. */
export function findCycle(graph: Map<string, string[]>): string[] {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (file: string): string[] => {
    if (state.get(file) === "done") return [];
    if (state.get(file) === "open") return [...stack.slice(stack.indexOf(file)), file];
    state.set(file, "open");
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      const cycle = visit(next);
      if (cycle.length) return cycle;
    }
    stack.pop();
    state.set(file, "done");
    return [];
  };
  for (const file of graph.keys()) {
    const cycle = visit(file);
    if (cycle.length) return cycle;
  }
  return [];
}

describe("src/ imports", () => {
  it("form no cycle", () => {
    const src = path.join(REPO, "src");
    const cycle = findCycle(importGraph(src)).map((f) => path.relative(src, f));
    expect(cycle, cycle.join(" → ")).toEqual([]);
  });

  it("a cycle is found, type-only imports included", () => {
    const graph = new Map([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["a"]],
      ["d", []],
    ]);
    expect(findCycle(graph)).toEqual(["a", "b", "c", "a"]);
    expect(
      findCycle(
        new Map([
          ["x", ["y"]],
          ["y", []],
        ]),
      ),
    ).toEqual([]);
  });
});
