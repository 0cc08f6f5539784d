/** Shared fixtures for the unit and CLI tests: the repo root, temp workspaces, InputError checks. */
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import { InputError } from "../../src/errors.js";

/** This checkout: configs/, autoscaler/, deploy_files/, scenes/, pipeline/, dist/. */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The repository's module files, as a workspace holds them. */
export const WORKSPACE_PARTS = ["configs", "autoscaler", "deploy_files", "scenes"] as const;

const temps: string[] = [];

/** A fresh temporary directory, removed by `removeTemps()`. */
export function makeTemp(prefix = "mcs-test-"): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  temps.push(dir);
  return dir;
}

export function removeTemps(): void {
  for (const dir of temps.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** A temp workspace holding copies of the repo's module files (and scenes), ready to break. */
export function copyWorkspace(parts: readonly string[] = WORKSPACE_PARTS): string {
  const dir = makeTemp("mcs-ws-");
  for (const part of parts)
    cpSync(path.join(REPO, part), path.join(dir, part), { recursive: true });
  return dir;
}

/** `work()` must throw an InputError for `input` whose message matches every pattern. */
export function expectInputError(work: () => unknown, input: string, ...patterns: RegExp[]) {
  let thrown: unknown;
  try {
    work();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, "expected an InputError").toBeInstanceOf(InputError);
  const error = thrown as InputError;
  expect(error.input).toBe(input);
  expect(error.message).not.toContain("\n");
  for (const pattern of patterns) expect(error.message).toMatch(pattern);
  return error;
}
