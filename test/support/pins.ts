/**
 * The `uses:` references of the workflows and actions this repository ships, read from their
 * text (the `# vX.Y.Z` comment beside a pin is not in the parsed YAML).
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { REPO } from "./workspace.js";

/** The workflows and the action metadata GitHub runs (not the act stand-ins in test/act). */
export const SHIPPED = [
  ...readdirSync(path.join(REPO, ".github/workflows"))
    .filter((f) => /\.ya?ml$/.test(f))
    .map((f) => `.github/workflows/${f}`),
  "action.yml",
  "janitor/action.yml",
];

export interface Uses {
  /** Relative to the repository. */
  file: string;
  line: number;
  /** What `uses:` names, e.g. `actions/checkout@<sha>` or `./janitor`. */
  ref: string;
  /** The comment after it, without `#` (e.g. `v4.4.0`), or "". */
  comment: string;
}

/** Every `uses:` of a file, one per line (`uses: X # comment`, as a step or a job). */
export function usesIn(file: string): Uses[] {
  const lines = readFileSync(path.join(REPO, file), "utf8").split("\n");
  return lines.flatMap((text, i) => {
    const m = /^\s*(?:-\s+)?uses:\s*(["']?)([^\s"'#]+)\1\s*(?:#\s*(.*))?$/.exec(text);
    return m ? [{ file, line: i + 1, ref: m[2]!, comment: (m[3] ?? "").trim() }] : [];
  });
}

/** A remote action or reusable workflow (not `./...` in this repository). */
export const isRemote = (ref: string) => !ref.startsWith("./");

/** The ref an action (`owner/repo`) is pinned to in the shipped workflows: one, or an error. */
export function pinnedRef(action: string): string {
  const refs = new Set(
    SHIPPED.flatMap(usesIn)
      .map((u) => u.ref)
      .filter((ref) => ref.startsWith(`${action}@`)),
  );
  if (refs.size !== 1) throw new Error(`${action}: pinned as ${[...refs].join(", ") || "nothing"}`);
  return [...refs][0]!;
}
