/**
 * The `ray` CLI of the venv, each command in its own process group: cancelling must stop the
 * whole tree (`ray submit` leaves its ssh child running on the head otherwise).
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { createInterface } from "node:readline";

const running = new Set<number>();

export interface RayRun {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function rayBinary(python: string): string {
  return path.join(path.dirname(python), "ray");
}

export function runRay(
  ray: string,
  args: string[],
  onLine: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<RayRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(ray, args, { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    if (child.pid) running.add(child.pid);
    const closed = [child.stdout, child.stderr].map((out) => {
      const lines = createInterface({ input: out });
      lines.on("line", onLine);
      return new Promise((r) => lines.on("close", r));
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (child.pid) running.delete(child.pid);
      void Promise.all(closed).then(() => resolve({ code, signal }));
    });
  });
}

/** Stop every ray command still running (their whole process groups). */
export function stopRunningRay(signal: NodeJS.Signals = "SIGTERM"): number {
  for (const pid of running) {
    try {
      process.kill(-pid, signal);
    } catch {
      running.delete(pid);
    }
  }
  return running.size;
}
