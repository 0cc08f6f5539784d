/**
 * The rendered cluster YAML's setup commands on a node booted from a stock image: a fresh minimal
 * Debian rootfs (test/support/bare-node.ts: python3 without pip or venv, sshd, sudo, user
 * `ubuntu`) in its own mount, PID and UTS namespaces with its own sshd. `ray up` with Ray's local
 * provider drives it as it drives an EC2 node: Ray's updater, over SSH, runs the demo module's
 * rendered commands (the plan's install of the pinned Ray included) in `bash --login -i`, then
 * the rendered head start commands (Ray on free ports, since the node shares this machine's
 * network; the watchdog as rendered). Ray then runs a task on the node.
 *
 * Slow the first time on a machine (the rootfs, ~20 s; Ray's wheels); the rootfs tarball, the
 * node's apt archives and Ray's wheels are kept under MCS_TEST_CACHE (~/.cache/mcs-pipeline).
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import { pinnedRayVersion } from "../src/ray/install.js";
import { rayInstallCommands } from "../src/cluster.js";
import { renderRun } from "./support/aws-provider.js";
import { startBareNode, type BareNode } from "./support/bare-node.js";
import { execCommand, freePorts, rayProcessesOf, VENV, type ExecResult } from "./support/sshd.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

const PIN = pinnedRayVersion(REPO);
/** Generous: without the wheel cache the node's pip downloads Ray's wheels (~150 MB) itself. */
const UP_TIMEOUT_MS = 900_000;

let node: BareNode | undefined;
let rendered: Rendered | undefined;
let yaml = "";
let clientTmp = "";
let down = false;
const timings: Record<string, string> = {};
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

/** The client-side `ray` CLI (this machine's pinned venv), with a TMPDIR of its own. */
function ray(args: string[], timeoutMs = 120_000): Promise<ExecResult> {
  return execCommand(path.join(VENV, "bin", "ray"), args, {
    env: {
      PATH: `${VENV}/bin:${process.env.PATH ?? "/usr/bin:/bin"}`,
      HOME: process.env.HOME,
      LANG: "C.UTF-8",
      TMPDIR: clientTmp,
      RAY_USAGE_STATS_ENABLED: "0",
    },
    timeoutMs,
  });
}

const output = (r: ExecResult) => `exit ${r.code ?? r.signal}\n${r.stdout}\n${r.stderr}`;

interface Rendered {
  cluster_name: string;
  file_mounts: Record<string, string>;
  initialization_commands?: string[];
  setup_commands: string[];
  head_setup_commands?: string[];
  head_start_ray_commands: string[];
}

beforeAll(async () => {
  // The wheels the plan's install command asks for, downloaded once into the cache.
  node = await startBareNode({ wheels: [`ray[default]==${PIN}`, "boto3"] });
  timings.rootfs = `${seconds(node.rootfs.ms)} (${node.rootfs.built ? "built with mmdebstrap" : "cached"})`;
  timings.wheels = `${seconds(node.wheels.ms)} (${node.wheels.skipped ?? (node.wheels.downloaded ? "downloaded" : "cached")})`;
  timings.unpack = seconds(node.extractMs);
  timings.boot = seconds(node.bootMs);
  clientTmp = makeTemp("mcs-bare-client-");

  // The demo module as the action plans it for AWS; its node-side parts onto the bare node.
  const run = renderRun(`bare-${Date.now().toString(36)}`);
  rendered = parseYaml(readFileSync(run.yaml, "utf8")) as Rendered;
  if (!rendered.head_start_ray_commands.some((c) => c.startsWith("ray start --head"))) {
    throw new Error(`no "ray start --head" in ${run.yaml}`);
  }
  const [gcs, client, agent] = await freePorts(3);
  yaml = path.join(clientTmp, "bare-node.yaml");
  writeFileSync(
    yaml,
    stringify({
      cluster_name: rendered.cluster_name,
      max_workers: 0,
      provider: { type: "local", head_ip: node.host, worker_ips: [] },
      auth: { ssh_user: node.user, ssh_private_key: node.privateKey },
      file_mounts: rendered.file_mounts,
      initialization_commands: rendered.initialization_commands ?? [],
      setup_commands: rendered.setup_commands,
      head_setup_commands: rendered.head_setup_commands ?? [],
      worker_setup_commands: [],
      // Ray's fixed ports are this machine's too: free ones instead of 6379, 10001, 52365.
      head_start_ray_commands: rendered.head_start_ray_commands.map((c) =>
        c.startsWith("ray start --head")
          ? `${c.replace("--port=6379", `--port=${gcs}`)} --node-ip-address=${node!.host}` +
            ` --ray-client-server-port=${client} --dashboard-agent-listen-port=${agent}` +
            " --include-dashboard=false --disable-usage-stats --num-cpus=1"
          : c,
      ),
      worker_start_ray_commands: [],
    }),
  );
});

afterAll(async () => {
  try {
    if (node && yaml && !down) await ray(["down", "-y", yaml]);
  } finally {
    await node?.stop();
    removeTemps();
    console.log(
      `bare node timings: ${Object.entries(timings)
        .map(([k, v]) => `${k} ${v}`)
        .join("; ")}`,
    );
  }
});

describe("a node from a stock image: the rendered setup commands, then Ray", () => {
  it("the node starts bare: python3 and sudo, but no venv, no pip, no Ray", async () => {
    const bare = await node!.ssh(
      "python3 --version; sudo -n true && echo sudo-ok;" +
        " python3 -c 'import ensurepip' 2>/dev/null && echo has-ensurepip;" +
        " command -v pip pip3 ray || echo nothing-on-path",
    );
    expect(bare.code, output(bare)).toBe(0);
    expect(bare.stdout).toMatch(/^Python 3\.11\./m);
    expect(bare.stdout).toContain("sudo-ok");
    expect(bare.stdout).not.toContain("has-ensurepip");
    expect(bare.stdout).toContain("nothing-on-path");
    // What ray up will run: the plan's install of the pinned Ray (the demo module pins none).
    expect(rendered!.setup_commands).toEqual(rayInstallCommands(PIN));
  });

  it(
    "ray up runs them over SSH, Ray starts on the node and runs a task",
    async () => {
      const up = await ray(["up", "-y", "--no-config-cache", yaml], UP_TIMEOUT_MS);
      timings["ray up"] = seconds(up.ms);
      expect(up.code, output(up)).toBe(0);

      // What the setup commands left: the venv's Ray first on PATH of every later command.
      const where = await ray(["exec", yaml, "command -v ray python3; ray --version"]);
      expect(where.code, output(where)).toBe(0);
      expect(where.stdout).toContain("/home/ubuntu/ray-venv/bin/ray");
      expect(where.stdout).toContain("/home/ubuntu/ray-venv/bin/python3");
      expect(where.stdout).toContain(`ray, version ${PIN}`);

      const status = await ray(["exec", yaml, "ray status"]);
      expect(status.code, output(status)).toBe(0);
      expect(status.stdout).toMatch(/^ 1 local\.cluster\.node$/m);
      expect(status.stdout).toMatch(/^ 0\.0\/1\.0 CPU$/m);

      const task = await ray([
        "exec",
        yaml,
        `python3 -c "import ray; ray.init(address='auto', log_to_driver=False); print('answer', ray.get(ray.remote(lambda: 6 * 7).remote()))"`,
      ]);
      expect(task.code, output(task)).toBe(0);
      expect(task.stdout).toContain("answer 42");

      // The rendered head start commands' last one: the watchdog, on the venv's python3.
      const running = rayProcessesOf(node!).map((p) => p.command);
      expect(running.some((c) => c.includes("/pipeline/watchdog.py --cluster"))).toBe(true);
      expect(running.some((c) => /\bgcs_server\b/.test(c))).toBe(true);

      // Harmless to repeat (ray up reruns them when the config changes): once more, by hand.
      for (const command of rendered!.setup_commands) {
        const again = await node!.ssh(command, { timeoutMs: 300_000 });
        expect(again.code, `${command}\n${output(again)}`).toBe(0);
      }
      const bashrc = await node!.ssh("grep -c ray-venv/bin ~/.bashrc");
      expect(bashrc.stdout.trim()).toBe("1");
    },
    UP_TIMEOUT_MS + 120_000,
  );

  it("ray down stops Ray on the node; stopping the node leaves no process and no mount", async () => {
    const result = await ray(["down", "-y", yaml]);
    timings["ray down"] = seconds(result.ms);
    down = true;
    expect(result.code, output(result)).toBe(0);
    const pidNamespace = node!.pidNamespace;
    const start = performance.now();
    await node!.stop();
    timings.stop = seconds(performance.now() - start);
    expect(rayProcessesOf({ pidNamespace })).toEqual([]);
    expect(node!.mountsLeft()).toEqual([]);
  });
});
