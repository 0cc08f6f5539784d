/**
 * Smoke test of the launcher-test fixtures: sshd in its own PID namespace as a Ray "node", moto
 * behind the STS trust-policy proxy, the OIDC endpoint, and the runner harness (with a stand-in
 * action built on the real @actions/core, so the harness is checked against the real formats).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import {
  AssumeRoleWithWebIdentityCommand,
  STSClient,
  type AssumeRoleWithWebIdentityCommandOutput,
} from "@aws-sdk/client-sts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeActionWorkspace, runRay, type ActionWorkspace } from "./support/cluster.js";
import { nodeAwsEnv, startLoopbackAws, type LoopbackAws } from "./support/loopback.js";
import { listKeys, TEST_KEYS, TEST_REGION } from "./support/moto.js";
import { jwtClaims } from "./support/oidc.js";
import {
  cleanupActions,
  leakedSecrets,
  parseFileCommands,
  runAction,
  startAction,
  type ActionRun,
} from "./support/runner.js";
import {
  rayProcessesOf,
  startSshd,
  waitForNoRayProcesses,
  type SshdFixture,
} from "./support/sshd.js";
import { makeTemp, REPO, removeTemps } from "./support/workspace.js";

const ROLE = "arn:aws:iam::123456789012:role/mcs-ci";
const DENIED = "arn:aws:iam::123456789012:role/mcs-denied";

let aws: LoopbackAws | undefined;
let node: SshdFixture | undefined;
let ws: ActionWorkspace | undefined;

const timings: Record<string, number> = {};
async function timed<T>(label: string, work: () => Promise<T>): Promise<T> {
  const start = performance.now();
  try {
    return await work();
  } finally {
    timings[label] = Math.round(performance.now() - start);
  }
}

beforeAll(async () => {
  // Each fixture is kept as soon as it runs, so afterAll stops it even if another failed.
  aws = await timed("loopback AWS start", () => startLoopbackAws({ proxy: { refuse: [DENIED] } }));
  node = await timed("sshd start", () => startSshd({ env: nodeAwsEnv(aws!.moto.url) }));
  ws = await makeActionWorkspace({ node, s3Endpoint: aws.moto.url });
});

afterAll(async () => {
  // Each part stops by its own PID, whatever happened above.
  await Promise.allSettled([cleanupActions(), node?.stop(), aws?.stop()]);
  removeTemps();
  console.log("fixture timings (ms):", JSON.stringify(timings));
});

describe("the sshd node", () => {
  it("accepts the fixture's key over the proxy command", async () => {
    const r = await timed("ssh true", () => node!.ssh("true"));
    expect(r.code, r.stderr).toBe(0);
  });

  it("gives sessions the node environment, and login shells the venv first", async () => {
    const r = await node!.ssh(
      'echo "$HOME|$RAY_TMPDIR|$AWS_ENDPOINT_URL|$AWS_ACCESS_KEY_ID"; ' +
        "bash --login -i -c 'command -v python' 2>/dev/null",
    );
    expect(r.code, r.stderr).toBe(0);
    const [env, python] = r.stdout.trim().split("\n");
    expect(env).toBe(`${node!.home}|${node!.rayTmpDir}|${aws!.moto.url}|testing`);
    expect(python).toBe(path.join(node!.venv, "bin", "python"));
  });

  it("reaches moto from the node with the node's own credentials", async () => {
    const key = "smoke/from-node.txt";
    const r = await node!.ssh(
      `python -c "import boto3; boto3.client('s3').put_object(Bucket='${ws!.bucket}', Key='${key}', Body=b'hi')"`,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(await ws!.listKeys("smoke/")).toEqual([key]);
  });
});

describe("a Ray cluster on the node (local provider)", () => {
  it("comes up, runs a driver, and goes down leaving no process", async () => {
    const yaml = ws!.clusterYaml;
    const up = await timed("ray up", () =>
      runRay(node!, ["up", "-y", "--no-config-cache", yaml], { timeoutMs: 90_000 }),
    );
    expect(up.code, `${up.stdout}\n${up.stderr}`).toBe(0);
    const running = rayProcessesOf(node!).map((p) => p.command);
    expect(running.some((c) => /\/raylet\b/.test(c))).toBe(true);
    expect(running.some((c) => /\/gcs_server\b/.test(c))).toBe(true);

    const driver =
      'python -c "import os, ray; ray.init(address=\\"auto\\"); ' +
      'print(\\"RESOURCES\\", ray.cluster_resources()); ' +
      'print(\\"TASK-ENV\\", ray.get(ray.remote(lambda: os.environ[\\"AWS_ENDPOINT_URL\\"]).remote()))"';
    const exec = await timed("ray exec", () =>
      runRay(node!, ["exec", yaml, driver], { timeoutMs: 60_000 }),
    );
    expect(exec.code, `${exec.stdout}\n${exec.stderr}`).toBe(0);
    expect(exec.stdout).toMatch(/RESOURCES .*'CPU': 2\.0/);
    expect(exec.stdout).toContain(`TASK-ENV ${aws!.moto.url}`);

    const down = await timed("ray down", () =>
      runRay(node!, ["down", "-y", yaml], { timeoutMs: 60_000 }),
    );
    expect(down.code, `${down.stdout}\n${down.stderr}`).toBe(0);
    expect(await waitForNoRayProcesses(node!, 10_000)).toEqual([]);
  });
});

describe("the OIDC endpoint", () => {
  const get = (url: string, bearer: string) =>
    fetch(url, { headers: { Authorization: `Bearer ${bearer}`, Accept: "application/json" } });

  it("answers core.getIDToken's request with a fresh JWT for the audience", async () => {
    const before = aws!.oidc.requests.length;
    const url = `${aws!.oidc.url}&audience=${encodeURIComponent("sts.amazonaws.com")}`;
    const first = await get(url, aws!.oidc.requestToken);
    const second = await get(url, aws!.oidc.requestToken);
    expect(first.status).toBe(200);
    const a = ((await first.json()) as { value: string }).value;
    const b = ((await second.json()) as { value: string }).value;
    expect(a.split(".")).toHaveLength(3);
    expect(a).not.toBe(b);
    const claims = jwtClaims(a);
    expect(claims.aud).toBe("sts.amazonaws.com");
    expect(claims.iss).toBe("https://token.actions.githubusercontent.com");
    expect(Number(claims.exp) - Number(claims.iat)).toBe(300);
    expect(aws!.oidc.issued.slice(-2).map((t) => t.jwt)).toEqual([a, b]);
    expect(aws!.oidc.requests.length - before).toBe(2);
    expect(aws!.oidc.url).toContain("?");
  });

  it("refuses a wrong bearer with 401 and issues nothing", async () => {
    const issued = aws!.oidc.issued.length;
    const r = await get(`${aws!.oidc.url}&audience=sts.amazonaws.com`, "wrong");
    expect(r.status).toBe(401);
    expect(aws!.oidc.issued).toHaveLength(issued);
  });
});

describe("the STS proxy in front of moto", () => {
  const sts = () =>
    new STSClient({
      region: TEST_REGION,
      endpoint: aws!.proxy.url,
      credentials: TEST_KEYS,
      maxAttempts: 1,
    });
  const token = async (audience = "sts.amazonaws.com") => {
    const r = await fetch(`${aws!.oidc.url}&audience=${audience}`, {
      headers: { Authorization: `Bearer ${aws!.oidc.requestToken}` },
    });
    return ((await r.json()) as { value: string }).value;
  };
  const assume = async (roleArn: string, webIdentityToken: string) =>
    sts().send(
      new AssumeRoleWithWebIdentityCommand({
        RoleArn: roleArn,
        RoleSessionName: "mcs-smoke",
        WebIdentityToken: webIdentityToken,
        DurationSeconds: 900,
      }),
    );
  const failure = (work: Promise<AssumeRoleWithWebIdentityCommandOutput>) =>
    work.then(
      () => undefined,
      (e: Error & { $metadata?: { httpStatusCode?: number } }) => ({
        name: e.name,
        status: e.$metadata?.httpStatusCode,
        message: e.message,
      }),
    );

  it("passes moto's credentials through and records them and the token", async () => {
    const jwt = await token();
    const out = await assume(ROLE, jwt);
    const c = out.Credentials!;
    expect(c.AccessKeyId).toBeTruthy();
    expect(aws!.proxy.credentials.at(-1)).toMatchObject({
      accessKeyId: c.AccessKeyId,
      secretAccessKey: c.SecretAccessKey,
      sessionToken: c.SessionToken,
      action: "AssumeRoleWithWebIdentity",
      roleArn: ROLE,
    });
    expect(aws!.proxy.webIdentityTokens.at(-1)).toBe(jwt);
    expect(aws!.proxy.secrets()).toEqual(
      expect.arrayContaining([c.SecretAccessKey, c.SessionToken, jwt]),
    );
  });

  it("refuses a listed role with STS's 403 AccessDenied", async () => {
    const count = aws!.proxy.credentials.length;
    const error = await failure(assume(DENIED, await token()));
    expect(error).toMatchObject({ name: "AccessDenied", status: 403 });
    expect(error!.message).toMatch(/Not authorized to perform sts:AssumeRoleWithWebIdentity/);
    expect(aws!.proxy.credentials).toHaveLength(count);
    expect(aws!.proxy.requests.at(-1)).toMatchObject({ roleArn: DENIED, refused: "AccessDenied" });
  });

  it("refuses what real STS refuses: no JWT, wrong audience, expired", async () => {
    // The SDK names STS's InvalidIdentityToken code InvalidIdentityTokenException.
    expect(await failure(assume(ROLE, "opaque"))).toMatchObject({
      name: "InvalidIdentityTokenException",
      status: 400,
    });
    expect(await failure(assume(ROLE, await token("someone-else")))).toMatchObject({
      name: "InvalidIdentityTokenException",
    });
    aws!.oidc.lifetimeSeconds = 0;
    try {
      expect(await failure(assume(ROLE, await token()))).toMatchObject({
        name: "ExpiredTokenException",
      });
    } finally {
      aws!.oidc.lifetimeSeconds = 300;
    }
  });

  it("forwards S3 unchanged", async () => {
    expect(await listKeys(aws!.proxy.url, ws!.bucket, "smoke/")).toEqual(
      await ws!.listKeys("smoke/"),
    );
  });
});

describe("the workspace", () => {
  it("holds the local-provider YAML and MCS configs naming the fixture bucket", () => {
    const yaml = readFileSync(ws!.clusterYaml, "utf8");
    expect(ws!.clusterYaml).toBe(path.join(ws!.dir, "autoscaler/ray_demo_aws.yaml"));
    expect(yaml).toContain("type: local");
    expect(yaml).toContain(`ssh_proxy_command: nc %h ${node!.port}`);
    expect(yaml).toMatch(/pip install -q "ray\[default\]==\d+\.\d+\.\d+"/);
    expect(ws!.mcsConfigs.length).toBeGreaterThan(0);
    for (const file of ws!.mcsConfigs) {
      expect(readFileSync(file, "utf8")).toMatch(new RegExp(`^s3_bucket = ${ws!.bucket}$`, "m"));
    }
  });
});

describe("the runner harness (stand-in action on the real @actions/core)", () => {
  let actionPath = "";
  const SECRET = "s3cr3t-value-1234";

  beforeAll(() => {
    actionPath = makeTemp("mcs-fake-action-");
    const core = pathToFileURL(path.join(REPO, "node_modules/@actions/core/lib/core.js")).href;
    writeFileSync(
      path.join(actionPath, "action.yml"),
      [
        "name: fake",
        "inputs:",
        "  module: { required: true }",
        "  scenes: { default: scenes/subset }",
        "  role-to-assume: { required: false }",
        "  hang: { default: 'false' }",
        "runs: { using: node24, main: dist/main/index.js, post: dist/post/index.js }",
        "",
      ].join("\n"),
    );
    const main = `
      import * as core from ${JSON.stringify(core)};
      core.info(\`inputs module=\${core.getInput("module")} scenes=\${core.getInput("scenes")} role=\${core.getInput("role-to-assume")}\`);
      core.info(\`env aws-key=\${process.env.AWS_ACCESS_KEY_ID ?? "unset"} endpoint=\${process.env.AWS_ENDPOINT_URL}\`);
      core.saveState("cluster-name", "mcs-demo-" + process.env.GITHUB_RUN_ID);
      core.saveState("multi", "line1\\nline2");
      core.setOutput("status", "success");
      core.setOutput("multi", "a\\nb");
      core.exportVariable("FAKE_EXPORTED", "from-main");
      core.addPath("/opt/fake-bin");
      core.setSecret(${JSON.stringify(SECRET)});
      await core.summary.addHeading("Fake run").addRaw("all good").write();
      const jwt = await core.getIDToken("sts.amazonaws.com");
      core.info(\`token parts \${jwt.split(".").length}\`);
      if (core.getInput("hang") === "true") {
        process.on("SIGINT", () => core.info("got SIGINT"));
        process.on("SIGTERM", () => { core.info("got SIGTERM"); process.exit(143); });
        core.info("ready");
        setInterval(() => {}, 1000);
      } else {
        core.error("a fake annotation", { file: "scenes/x.json", startLine: 3 });
      }
    `;
    const post = `
      import * as core from ${JSON.stringify(core)};
      core.info(\`state cluster=\${core.getState("cluster-name")} multi=\${JSON.stringify(core.getState("multi"))}\`);
      core.info(\`exported=\${process.env.FAKE_EXPORTED} path-first=\${process.env.PATH.split(":")[0]}\`);
      core.info(\`post module=\${core.getInput("module")}\`);
    `;
    for (const [entry, code] of [
      ["main", main],
      ["post", post],
    ] as const) {
      mkdirSync(path.join(actionPath, "dist", entry), { recursive: true });
      writeFileSync(path.join(actionPath, "dist", entry, "index.js"), code);
    }
  });

  it("parses both file-command forms", () => {
    expect(parseFileCommands("a=1\nb<<EOF\nx\ny\nEOF\nc<<D\n\nD\na=2\n")).toEqual({
      a: "2",
      b: "x\ny",
      c: "",
    });
  });

  it("runs main then post with the runner's environment, files and state", async () => {
    const saved = process.env.AWS_ACCESS_KEY_ID;
    process.env.AWS_ACCESS_KEY_ID = "DEVELOPER-KEY";
    let main: ActionRun;
    try {
      main = await timed("fake main", () =>
        runAction("main", {
          actionPath,
          workspace: ws!.dir,
          inputs: { module: "demo", "role-to-assume": ROLE },
          oidc: aws!.oidc,
          awsEndpoint: aws!.proxy.url,
        }),
      );
    } finally {
      if (saved === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      else process.env.AWS_ACCESS_KEY_ID = saved;
    }
    expect(main.code, main.stderr).toBe(0);
    expect(main.stdout).toContain(`inputs module=demo scenes=scenes/subset role=${ROLE}`);
    expect(main.stdout).toContain(`env aws-key=unset endpoint=${aws!.proxy.url}`);
    expect(main.stdout).toContain("token parts 3");
    expect(main.outputs).toEqual({ status: "success", multi: "a\nb" });
    expect(main.state).toEqual({
      "cluster-name": `mcs-demo-${main.job.runId}`,
      multi: "line1\nline2",
    });
    expect(main.env).toEqual({ FAKE_EXPORTED: "from-main" });
    expect(main.path).toEqual(["/opt/fake-bin"]);
    expect(main.summary).toContain("Fake run");
    expect(main.masks).toContain(SECRET);
    expect(main.annotations).toEqual([
      {
        command: "error",
        properties: { file: "scenes/x.json", line: "3" },
        message: "a fake annotation",
      },
    ]);
    expect(leakedSecrets(main, [SECRET])).toEqual([]);
    expect(leakedSecrets(main, ["scenes/subset"])).toEqual(["secret #0 (scen...) in stdout"]);

    const post = await runAction("post", { job: main.job });
    expect(post.code, post.stderr).toBe(0);
    expect(post.stdout).toContain(`state cluster=mcs-demo-${main.job.runId} multi="line1\\nline2"`);
    expect(post.stdout).toContain("exported=from-main path-first=/opt/fake-bin");
    expect(post.stdout).toContain("post module=demo");
  });

  it("cancels like the runner: SIGINT, then SIGTERM after the grace period", async () => {
    const running = startAction("main", {
      actionPath,
      workspace: ws!.dir,
      inputs: { module: "demo", hang: "true" },
      oidc: aws!.oidc,
    });
    await running.waitForLine(/^ready$/, 10_000);
    const run = await timed("fake cancel", () => running.cancel({ sigtermAfterMs: 300 }));
    expect(run.signalsSent).toEqual(["SIGINT", "SIGTERM"]);
    expect(run.stdout).toMatch(/got SIGINT\n(.*\n)*got SIGTERM/);
    expect(run.code).toBe(143);
    expect(run.job.leftovers()).toEqual([]);
  });

  it("rejects inputs action.yml does not declare", () => {
    expect(() =>
      startAction("main", { actionPath, workspace: ws!.dir, inputs: { modul: "demo" } }),
    ).toThrow(/modul is not declared/);
  });
});
