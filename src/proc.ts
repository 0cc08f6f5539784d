/**
 * `stream` is ours, not `@actions/exec`: callers need the child itself (a process group to signal
 * by PID, a SIGTERM to forward), which exec never hands out; plain runs use exec (`capture`).
 *
 * Child processes with their output streamed line by line (long runs must show progress).
 */
import { spawn, type SpawnOptions } from "node:child_process";
import { createInterface } from "node:readline";
import { getExecOutput } from "@actions/exec";

export interface Streamed {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface StreamOptions extends Pick<SpawnOptions, "cwd" | "env" | "detached"> {
  onStdout?: (line: string) => void;
  onStderr?: (line: string) => void;
  /** Called with the child once it runs: callers forward signals to it. */
  onSpawn?: (child: ReturnType<typeof spawn>) => void;
}

export function stream(command: string, args: string[], options: StreamOptions = {}) {
  return new Promise<Streamed>((resolve, reject) => {
    const { cwd, env, detached } = options;
    const child = spawn(command, args, { cwd, env, detached, stdio: "pipe" });
    child.stdin?.end();
    options.onSpawn?.(child);
    const done = [child.stdout, child.stderr].map((out, i) => {
      const each = i === 0 ? options.onStdout : options.onStderr;
      const lines = createInterface({ input: out! });
      if (each) lines.on("line", each);
      return new Promise((r) => lines.on("close", r));
    });
    child.on("error", reject);
    child.on(
      "close",
      (code, signal) => void Promise.all(done).then(() => resolve({ code, signal })),
    );
  });
}

/** Run to completion; its stdout, or an error carrying its stderr. */
export async function capture(command: string, args: string[]): Promise<string> {
  const result = await getExecOutput(command, args, { silent: true, ignoreReturnCode: true });
  if (result.exitCode !== 0) {
    const err = result.stderr.split("\n").filter(Boolean);
    throw new Error(
      `${command} ${args.join(" ")} failed (${result.exitCode}): ${err.slice(-5).join(" / ")}`,
    );
  }
  return result.stdout.replace(/\n$/, "");
}
