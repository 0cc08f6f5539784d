/**
 * The `ray` CLI of the venv, each command in its own process group: cancelling must stop the
 * whole tree (`ray submit` leaves its ssh child running on the head otherwise).
 */
import path from "node:path";
import { stream, type Streamed } from "../proc.js";

const running = new Set<number>();

export function rayBinary(python: string): string {
  return path.join(path.dirname(python), "ray");
}

export async function runRay(
  ray: string,
  args: string[],
  onLine: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Streamed> {
  let pid: number | undefined;
  try {
    return await stream(ray, args, {
      env,
      detached: true,
      onSpawn: (child) => {
        pid = child.pid;
        if (pid) running.add(pid);
      },
      onStdout: onLine,
      onStderr: onLine,
    });
  } finally {
    if (pid) running.delete(pid);
  }
}

/** Stop every ray command still running (their whole process groups). */
export function stopRunningRay(signal: NodeJS.Signals = "SIGTERM"): void {
  for (const pid of running) {
    try {
      process.kill(-pid, signal);
    } catch {
      running.delete(pid);
    }
  }
}
