/** The Ray installer, run the way users meet it: `node dist/cli/index.js setup`. */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { pinnedRayVersion } from "../src/ray/install.js";

const root = path.resolve(import.meta.dirname, "..");
const cli = path.join(root, "dist/cli/index.js");

function setup(env: Record<string, string>) {
  return spawnSync("node", [cli, "setup"], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, ...env },
  });
}

describe("Ray installer", () => {
  it("reads the one pinned Ray version", () => {
    expect(pinnedRayVersion(root)).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("skips an up-to-date venv and says so", () => {
    const run = setup({});
    expect(run.status).toBe(0);
    expect(run.stdout).toContain(`Ray ${pinnedRayVersion(root)} is already installed`);
  });

  it("fails with a clear message when python3 is missing", () => {
    const venv = path.join(mkdtempSync(path.join(tmpdir(), "venv-")), "v");
    const run = setup({ MCS_VENV: venv, MCS_PYTHON: "/nonexistent/python3" });
    expect(run.status).toBe(3);
    expect(run.stderr.trim()).toMatch(/needs Python 3\.10 or newer .*found none.*install python3/);
    expect(existsSync(venv)).toBe(false);
  });

  it("refuses a Python older than 3.10", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "oldpy-"));
    const fake = path.join(dir, "python3");
    // A stand-in interpreter that reports 3.8: the boundary here is the machine's Python.
    writeFileSync(fake, "#!/bin/sh\necho 3.8\n", { mode: 0o755 });
    const run = setup({ MCS_VENV: path.join(dir, "v"), MCS_PYTHON: fake });
    expect(run.status).toBe(3);
    expect(run.stderr).toContain("found 3.8");
  });
});
