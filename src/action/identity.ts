/**
 * Which job this is. One workflow run can hold several jobs that use the action (a matrix, or
 * several jobs calling eval.yml), and each must get a cluster and a head-node folder of its own
 * (issue 8: three matrix jobs once shared one). So the id the action gives the engine, the plan's
 * run id, is unique to the job: `<run id>-<attempt>-<job>`. Every name of the run is built from
 * it: the cluster name (cluster.ts, which adds the module and level), the head-node folder, the
 * staging folder, the run summary's key.
 *
 * `<job>` is GITHUB_JOB (the job's key in its workflow, the same for every job of a matrix) and
 * the `job-key` input. A step gets neither its matrix values nor its position as environment
 * variables, but action.yml's input defaults are evaluated with the `job` and `strategy` contexts,
 * so `job-key` defaults to `job.check_run_id` (unique to each job of each attempt, also inside a
 * reusable workflow), or `strategy.job-index` (the position in the job's own matrix) where the
 * runner has no check-run id. Callers pass nothing.
 */
import * as core from "@actions/core";
import { NAME_SAFE, nameSafe, shortHash } from "../cluster.js";
import { newRunId } from "../plan.js";

/** The job part of a run id stays this short: a longer one is cut and hashed. */
export const JOB_TAG_MAX = 32;

/**
 * `<run id>-<attempt>-<job>[-<job key>]` on a runner (GITHUB_RUN_ID set), else a fresh
 * time-stamped id (the CLI's kind). Deterministic: the same job gets the same id.
 */
export function jobRunId(
  env: NodeJS.ProcessEnv = process.env,
  jobKey: string = core.getInput("job-key"),
): string {
  const run = env.GITHUB_RUN_ID?.trim();
  if (!run) return newRunId();
  const attempt = env.GITHUB_RUN_ATTEMPT?.trim() || "1";
  const id = `${run}-${attempt}`;
  const safeId = NAME_SAFE.test(id) ? id : nameSafe(id) || shortHash(id);
  // A default no runner evaluated (`${{ ... }}` as written) is the same for every job: no key.
  const key = jobKey.includes("${{") ? "" : jobKey.trim();
  const tag = jobTag(env.GITHUB_JOB?.trim() ?? "", key);
  return tag ? `${safeId}-${tag}` : safeId;
}

/**
 * `<GITHUB_JOB>-<job key>` as it is when it is already name-safe and at most JOB_TAG_MAX long;
 * otherwise its name-safe form cut short, then a hash of both parts as given (so `Eval` and
 * `eval`, or two long matrix keys alike at the start, stay apart).
 */
export function jobTag(job: string, key: string): string {
  const text = [job, key].filter(Boolean).join("-");
  if (text === "" || (NAME_SAFE.test(text) && text.length <= JOB_TAG_MAX)) return text;
  const hash = shortHash(JSON.stringify([job, key]));
  const head = nameSafe(text)
    .slice(0, JOB_TAG_MAX - hash.length - 1)
    .replace(/-+$/, "");
  return head ? `${head}-${hash}` : hash;
}
