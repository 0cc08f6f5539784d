/**
 * The frame of an action test against loopback AWS (test/support/loopback.ts) with Ray nodes on
 * the sshd fixture: AWS for the whole file, and after each test its jobs cleaned up and its node
 * stopped (which ends everything in the node's namespace, whatever a failed test left there).
 */
import { afterAll, afterEach, beforeAll } from "vitest";
import { startLoopbackAws, type LoopbackAws } from "./loopback.js";
import { cleanupActions, type ActionJob } from "./runner.js";
import { startSshd, type SshdFixture, type SshdOptions } from "./sshd.js";
import { removeTemps } from "./workspace.js";

export interface ActionSuite {
  aws(): LoopbackAws;
  /** A node for the running test; stopped after it. */
  startNode(options?: SshdOptions): Promise<SshdFixture>;
  /** `job`, cleaned up after the running test. */
  track(job: ActionJob): ActionJob;
  /** The running test's jobs so far. */
  jobs(): readonly ActionJob[];
}

/** Registers the hooks (call it inside a describe block). */
export function actionSuite(): ActionSuite {
  let aws: LoopbackAws | undefined;
  let node: SshdFixture | undefined;
  const jobs: ActionJob[] = [];
  beforeAll(async () => {
    aws = await startLoopbackAws();
  });
  afterAll(async () => {
    await cleanupActions().catch(() => undefined);
    await aws?.stop();
    removeTemps();
  });
  afterEach(async () => {
    for (const job of jobs.splice(0)) await job.cleanup();
    await node?.stop();
    node = undefined;
  });
  return {
    aws: () => aws!,
    startNode: async (options) => (node = await startSshd(options)),
    track: (job) => {
      jobs.push(job);
      return job;
    },
    jobs: () => jobs,
  };
}
