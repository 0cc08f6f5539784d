/**
 * Bad input: one line naming the input and the fix. Raised before anything starts; the CLI
 * exits 2 and the action fails the step with it.
 */
export class InputError extends Error {
  constructor(
    /** The input as the request names it (`module`, `scenes`, ...); front ends render it. */
    readonly input: string,
    message: string,
  ) {
    super(message);
    this.name = "InputError";
  }
}

/** The machine cannot run the pipeline (no python3, pip failed, the driver crashed). */
export class EnvironmentError extends Error {
  override name = "EnvironmentError";
}

/** One preflight finding (aws/preflight.ts): one line that names the problem and its fix. */
export interface Finding {
  level: "error" | "warning";
  text: string;
}

/**
 * The preflight found what would fail the run, before anything was created. The front end has
 * shown every finding already (each its own line); the CLI exits 2, the action fails with 2.
 */
export class PreflightError extends Error {
  override name = "PreflightError";
  constructor(readonly findings: Finding[]) {
    const errors = findings.filter((f) => f.level === "error").length;
    super(`the preflight found ${errors} problem${errors === 1 ? "" : "s"}; nothing was started`);
  }
}
