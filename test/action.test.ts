import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, it } from "vitest";
import { makeActionWorkspace } from "./support/cluster.js";
import { startMoto, startStsProxy, TEST_KEYS, TEST_REGION, type MotoServer, type StsProxy } from "./support/moto.js";
import { startOidcServer, type OidcServer } from "./support/oidc.js";
import { ActionJob, cleanupActions } from "./support/runner.js";
import { rayProcessesOf, startSshd, type SshdFixture } from "./support/sshd.js";
import { removeTemps } from "./support/workspace.js";

let moto: MotoServer | undefined;
let proxy: StsProxy | undefined;
let oidc: OidcServer | undefined;
let node: SshdFixture | undefined;
beforeAll(async () => {
  moto = await startMoto();
  proxy = await startStsProxy(moto.url);
  oidc = await startOidcServer();
  node = await startSshd({ env: { AWS_ENDPOINT_URL: moto.url, AWS_ACCESS_KEY_ID: TEST_KEYS.accessKeyId, AWS_SECRET_ACCESS_KEY: TEST_KEYS.secretAccessKey, AWS_DEFAULT_REGION: TEST_REGION, AWS_EC2_METADATA_DISABLED: "true" } });
});
afterAll(async () => {
  await Promise.allSettled([cleanupActions(), node?.stop(), moto?.stop(), proxy?.close(), oidc?.close()]);
  removeTemps();
});
it("explore", async () => {
  const ws = await makeActionWorkspace({ node: node!, s3Endpoint: moto!.url });
  const job = new ActionJob({ workspace: ws.dir, inputs: { module: "demo", scenes: "scenes/subset", "role-to-assume": "arn:aws:iam::123456789012:role/mcs-eval", "aws-region": "us-east-1" }, oidc: oidc!, awsEndpoint: proxy!.url });
  const main = await job.run("main");
  writeFileSync("/tmp/explore/main.json", JSON.stringify({ ...main, job: undefined }, null, 1));
  writeFileSync("/tmp/explore/main.stdout", main.stdout);
  writeFileSync("/tmp/explore/summary.md", main.summary);
  const post = await job.run("post");
  writeFileSync("/tmp/explore/post.stdout", post.stdout + "\n---\n" + post.stderr);
  writeFileSync("/tmp/explore/extra.json", JSON.stringify({ keys: await ws.listKeys(), ray: rayProcessesOf(node!), leftovers: job.leftovers(), oidc: oidc!.requests, sts: proxy!.requests, postcode: post.code }, null, 1));
}, 300_000);
