/**
 * The driver on the head node, detached from SSH (pipeline/attach.py): one `ray exec` starts it
 * (once per run) and follows its output; when the connection drops, the follow reconnects with
 * bounded backoff and goes on from the next line, so no line is shown twice and no scene runs
 * twice. A cancel stops the driver explicitly: it saves the summary as interrupted. While a
 * follow runs, attach.py touches the plan's `heartbeat`: the head's watchdog (pipeline/watchdog.py)
 * tears the cluster down once nobody has followed for a while (see cluster.ts WatchdogSettings).
 * A follow budget (followWithin) ends the follow only: the driver runs on, and the watchdog, which
 * never acts while a driver runs, tears the cluster down after it has finished.
 */
import { runRay, stopRunningRay } from "./cli.js";

/** Consecutive failed connections before the follow gives up (1 to 2.5 minutes of backoff). */
export const MAX_RECONNECTS = 8;
const MAX_DELAY_MS = 30_000;

const DRIVER_LINE = /^\[mcs:(\d+)\] ?(.*)$/;
/** attach.py's own lines: `following from line N`, then `exit CODE` or `error MESSAGE`. */
const STATUS = /^mcs-follow: (\S+)\s*(.*)$/;

export interface FollowOutput {
  /** A line of the driver's output, each exactly once, in order. */
  driver: (line: string) => void;
  /** Anything else `ray exec` printed (Ray's and the shell's chatter). */
  other: (line: string) => void;
  /** A dropped connection and the reconnect. */
  notice: (line: string) => void;
}

/** The shell command, run on the head in `ray exec`'s login shell (`~` is the SSH user's home). */
function attach(remotePlan: string, args: string): string {
  return `python3 ${remotePlan}/pipeline/attach.py --plan ${remotePlan} ${args}`;
}

/** Start the driver if it is not running yet and follow it to its end; its exit status. */
export async function followDriver(
  ray: string,
  yaml: string,
  remotePlan: string,
  out: FollowOutput,
  cancel: AbortSignal,
): Promise<number> {
  let next = 1;
  for (let failures = 0; ;) {
    cancel.throwIfAborted();
    let verdict: { kind: string; detail: string } | undefined;
    let reached = false; // attach.py answered: the connection worked
    const result = await runRay(
      ray,
      ["exec", yaml, attach(remotePlan, `--from-line ${next}`)],
      (line) => {
        const text = line.replace(/\r$/, "");
        const driver = DRIVER_LINE.exec(text);
        if (driver) {
          // A line the follow has shown before (it can't, by --from-line, but never twice).
          if (Number(driver[1]) < next) return;
          next = Number(driver[1]) + 1;
          out.driver(driver[2]!);
          return;
        }
        const status = STATUS.exec(text);
        if (status) {
          reached = true;
          verdict = { kind: status[1]!, detail: status[2]! };
        } else out.other(text);
      },
    );
    cancel.throwIfAborted();
    if (verdict?.kind === "exit") return Number.parseInt(verdict.detail, 10);
    if (verdict?.kind === "error")
      throw new Error(`following the driver failed: ${verdict.detail}`);
    // Only connections that never reached the head count against the limit: a follow that
    // worked for an hour and then dropped starts the count again.
    failures = reached ? 1 : failures + 1;
    if (failures > MAX_RECONNECTS) {
      throw new Error(
        `lost the connection to the head node: ${MAX_RECONNECTS} reconnects failed (ray exec exit ${result.code ?? result.signal})`,
      );
    }
    // Full jitter on an exponential step: a fleet of jobs must not reconnect in step.
    const delay = Math.min(MAX_DELAY_MS, 1000 * 2 ** failures) * (0.5 + Math.random() / 2);
    out.notice(
      `Connection to the head node lost (ray exec exit ${result.code ?? result.signal}); the driver ` +
        `keeps running there. Reconnecting in ${(delay / 1000).toFixed(1)} s ` +
        `(attempt ${failures} of ${MAX_RECONNECTS}), from line ${next}.`,
    );
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, delay);
      cancel.addEventListener("abort", () => resolve(clearTimeout(timer)), { once: true });
    });
  }
}

/**
 * `follow` (the driver's exit status) with a signal that a cancel aborts, and so does the end of
 * `minutes` (undefined: no end): then the `ray exec` following is stopped and the answer is
 * "budget spent" (never for a cancel, which throws as before). The driver is not touched.
 */
export async function followWithin(
  minutes: number | undefined,
  cancel: AbortSignal,
  follow: (signal: AbortSignal) => Promise<number>,
): Promise<number | "budget spent"> {
  if (minutes === undefined) return follow(cancel);
  const budget = new AbortController();
  const timer = setTimeout(() => {
    budget.abort();
    stopRunningRay("SIGTERM"); // the follow's `ray exec`: the only ray command running now
  }, minutes * 60_000);
  try {
    return await follow(AbortSignal.any([cancel, budget.signal]));
  } catch (error) {
    if (budget.signal.aborted && !cancel.aborted) return "budget spent";
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** SIGTERM the driver and wait for it to save the summary; what attach.py said, or undefined. */
export async function stopDriver(
  ray: string,
  yaml: string,
  remotePlan: string,
  onLine: (line: string) => void,
  waitSeconds = 20,
): Promise<string | undefined> {
  let said: string | undefined;
  await runRay(ray, ["exec", yaml, attach(remotePlan, `--stop --wait ${waitSeconds}`)], (line) => {
    const text = line.replace(/\r$/, "");
    const status = STATUS.exec(text);
    if (status) said = `${status[1]} ${status[2]}`.trim();
    onLine(text);
  });
  return said;
}
