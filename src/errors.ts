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
