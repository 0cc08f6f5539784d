/**
 * Launch overhead of the action (run by hand: `npx tsx bench/launch.bench.ts [runs]`).
 *
 * On the launcher-test cluster (Ray's local provider over SSH to a loopback sshd, moto for STS
 * and S3, the loopback OIDC endpoint) the action's main step runs a small evaluation. Measured:
 *   overhead   step start → the driver's first scene start, minus `ray up` itself
 *   ray calls  `ray` CLI invocations after `ray up` (a wrapper around the venv's ray logs them)
 *   ssh        SSH connections sshd accepted after `ray up` ended
 * Medians over the runs; the machine is shared and noisy.
 */
import {
  chmodSync,
  mkdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
  copyFileSync,
} from "node:fs";
import path from "node:path";
import { makeActionWorkspace } from "../test/support/cluster.js";
import { startMoto, startStsProxy } from "../test/support/moto.js";
import { startOidcServer } from "../test/support/oidc.js";
import { runAction } from "../test/support/runner.js";
import { startSshd, VENV } from "../test/support/sshd.js";
import { makeTemp, removeTemps } from "../test/support/workspace.js";

const runs = Number(process.argv[2] ?? 3);

/**
 * A venv that is the repo's, except that `ray` logs each call's start and end, with the number
 * of SSH connections sshd has accepted so far (its log has no timestamps).
 */
function countingVenv(dir: string, log: string, sshdLog: string): string {
  mkdirSync(path.join(dir, "bin"), { recursive: true });
  copyFileSync(path.join(VENV, "pyvenv.cfg"), path.join(dir, "pyvenv.cfg"));
  symlinkSync(path.join(VENV, "lib"), path.join(dir, "lib"));
  symlinkSync(path.join(VENV, "bin", "python"), path.join(dir, "bin", "python"));
  const ray = path.join(dir, "bin", "ray");
  writeFileSync(
    ray,
    `#!/bin/sh\nssh() { grep -c "Accepted publickey" ${sshdLog}; }\necho "start $(date +%s.%N) $1 $(ssh)" >> ${log}\n"${VENV}/bin/ray" "$@"\nrc=$?\n` +
      `echo "end $(date +%s.%N) $1 $(ssh)" >> ${log}\nexit $rc\n`,
  );
  chmodSync(ray, 0o755);
  return dir;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function main() {
  const moto = await startMoto();
  const proxy = await startStsProxy(moto.url);
  const oidc = await startOidcServer();
  const node = await startSshd({
    env: {
      AWS_ENDPOINT_URL: moto.url,
      AWS_ACCESS_KEY_ID: "testing",
      AWS_SECRET_ACCESS_KEY: "testing",
    },
  });
  const results: {
    overhead: number;
    rayCalls: number;
    ssh: number;
    sshUp: number;
    up: number;
  }[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const ws = await makeActionWorkspace({ node, s3Endpoint: moto.url });
      const tmp = makeTemp("bench-launch-");
      const log = path.join(tmp, "ray-calls.log");
      writeFileSync(log, "");
      const start = Date.now() / 1000;
      const run = await runAction("main", {
        workspace: ws.dir,
        oidc,
        awsEndpoint: proxy.url,
        venv: countingVenv(path.join(tmp, "venv"), log, node.log),
        inputs: {
          module: "demo",
          scenes: "scenes/subset",
          "role-to-assume": "arn:aws:iam::123456789012:role/mcs-bench",
        },
      });
      if (run.code !== 0) throw new Error(`main failed (${run.code}):\n${run.stdout.slice(-3000)}`);
      const calls = readFileSync(log, "utf8")
        .trim()
        .split("\n")
        .map((l) => l.split(" "));
      const upEndCall = calls.find(([kind, , cmd]) => kind === "end" && cmd === "up")!;
      const upEnd = Number(upEndCall[1]);
      const lastCall = calls.at(-1)!;
      const upStart = Number(calls.find(([kind, , cmd]) => kind === "start" && cmd === "up")![1]);
      const summary = JSON.parse(readFileSync(run.outputs["summary-path"]!, "utf8"));
      const firstScene = Math.min(
        ...summary.scenes.map(
          (s: { history: { started_at: string }[] }) => Date.parse(s.history[0]!.started_at) / 1000,
        ),
      );
      const after = calls.filter(([kind, t]) => kind === "start" && Number(t) >= upEnd);
      results.push({
        up: upEnd - upStart,
        overhead: firstScene - start - (upEnd - upStart),
        rayCalls: after.length,
        ssh: Number(lastCall[3]) - Number(upEndCall[3]),
        sshUp:
          Number(upEndCall[3]) - Number(calls.find(([k, , c]) => k === "start" && c === "up")![3]),
      });
      const r = results.at(-1)!;
      console.log(
        `run ${i + 1}: overhead ${r.overhead.toFixed(2)} s (ray up ${r.up.toFixed(2)} s excluded), ` +
          `ray calls after up ${r.rayCalls} (${after.map((c) => c[2]).join(", ")}), ssh connections ${r.ssh} (ray up itself: ${r.sshUp}; Ray's ssh ControlMaster is reused)`,
      );
    }
  } finally {
    await node.stop();
    await Promise.all([oidc.close(), proxy.close()]);
    await moto.stop();
    removeTemps();
  }
  console.log(
    `median of ${runs}: launch overhead ${median(results.map((r) => r.overhead)).toFixed(2)} s, ` +
      `ray up ${median(results.map((r) => r.up)).toFixed(2)} s, ray CLI calls after up ` +
      `${median(results.map((r) => r.rayCalls))}, ssh connections after up ${median(results.map((r) => r.ssh))}`,
  );
}

void main();
