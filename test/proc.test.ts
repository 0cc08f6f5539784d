/**
 * Child processes: `capture`, the pip install and Ray's schema check run through @actions/exec;
 * `stream` (ours) hands out the child, so a caller can signal its whole process group.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { validateWithRaySchema } from "../src/cluster.js";
import { capture, stream } from "../src/proc.js";
import { ensureRay, pinnedRayVersion, venvPython } from "../src/ray/install.js";
import { REPO } from "./support/workspace.js";

function script(dir: string, name: string, body: string): string {
  const file = path.join(dir, name);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

/** Running: there, and not a zombie (nothing may reap orphans in a container). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

describe("capture", () => {
  it("returns stdout without the last newline", async () => {
    expect(await capture("sh", ["-c", "echo one; echo two"])).toBe("one\ntwo");
  });

  it("fails with the exit code and the end of stderr", async () => {
    const run = capture("sh", ["-c", "echo out; echo e1 >&2; echo e2 >&2; exit 3"]);
    await expect(run).rejects.toThrow(/^sh -c .* failed \(3\): e1 \/ e2$/);
  });

  it("fails when the command is not there", async () => {
    await expect(capture("/nonexistent/tool", [])).rejects.toThrow();
  });
});

describe("stream", () => {
  it("calls back line by line per stream and reports the exit code", async () => {
    const out: string[] = [];
    const err: string[] = [];
    const result = await stream("sh", ["-c", "echo a; echo b >&2; printf c; exit 4"], {
      onStdout: (l) => out.push(l),
      onStderr: (l) => err.push(l),
    });
    expect(result).toEqual({ code: 4, signal: null });
    expect(out).toEqual(["a", "c"]);
    expect(err).toEqual(["b"]);
  });

  it("a detached child's whole process group stops on one signal to its PID", async () => {
    let pid = 0;
    let grandchild = 0;
    const run = stream("sh", ["-c", "sleep 60 & echo $!; wait"], {
      detached: true,
      onSpawn: (child) => (pid = child.pid!),
      onStdout: (line) => {
        grandchild = Number(line);
        process.kill(-pid, "SIGTERM");
      },
    });
    expect(await run).toEqual({ code: null, signal: "SIGTERM" });
    await expect.poll(() => alive(grandchild)).toBe(false);
  });
});

describe("ensureRay's pip install (through @actions/exec)", () => {
  /** A venv whose python fakes pip (output on both streams) and reports Ray once "installed". */
  function fakeVenv(pipExit: number) {
    const dir = mkdtempSync(path.join(tmpdir(), "fake-venv-"));
    const version = pinnedRayVersion(REPO);
    script(
      dir,
      "bin/python",
      [
        'here=$(dirname "$0")',
        'if [ "$1" = -m ]; then',
        "  echo 'Collecting ray'; echo 'Downloading ray.whl'; echo 'WARNING: slow' >&2",
        `  touch "$here/installed"; echo 'Successfully installed ray'; exit ${pipExit}`,
        "fi",
        `[ -f "$here/installed" ] && echo ${version}`,
      ].join("\n"),
    );
    const base = script(dir, "base-python", "echo 3.11");
    return { venvDir: dir, base, version };
  }

  it("logs pip's progress lines and its stderr, and returns the venv's python", async () => {
    const { venvDir, base } = fakeVenv(0);
    const log: string[] = [];
    const python = await ensureRay({
      toolRoot: REPO,
      venvDir,
      python: base,
      log: (l) => log.push(l),
    });
    expect(python).toBe(venvPython(venvDir));
    // stdout and stderr are pipes of their own: each keeps its order, not one against the other.
    const lines = log.filter((l) => l.startsWith("  "));
    expect(lines.filter((l) => l !== "  WARNING: slow")).toEqual([
      "  Collecting ray",
      "  Successfully installed ray",
    ]);
    expect(lines.filter((l) => l === "  WARNING: slow")).toHaveLength(1);
    expect(lines).toHaveLength(3);
  });

  it("a failing pip is an error with its exit code", async () => {
    const { venvDir, base, version } = fakeVenv(2);
    const run = ensureRay({ toolRoot: REPO, venvDir, python: base, log: () => undefined });
    await expect(run).rejects.toThrow(
      `installing Ray ${version} into ${venvDir} failed (pip exit 2); see the pip output above`,
    );
  });
});

describe("validateWithRaySchema (through @actions/exec)", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "fake-schema-"));

  it("names the offending key from the checker's last stderr line", async () => {
    const python = script(
      dir,
      "bad",
      "echo noise >&2; echo 'provider/region: is required' >&2; exit 1",
    );
    await expect(validateWithRaySchema(python, "c.yaml", "ray_x_aws.yaml")).rejects.toThrow(
      "ray_x_aws.yaml does not match Ray's cluster schema: provider/region: is required",
    );
  });

  it("passes a config the checker accepts", async () => {
    const python = script(dir, "good", "echo fine >&2; exit 0");
    await expect(validateWithRaySchema(python, "c.yaml", "x")).resolves.toBeUndefined();
  });
});
