/**
 * One lifetime rule for a cluster: the head's watchdog tears it down at its `cluster-max-minutes`
 * (pipeline/watchdog.py), with the interrupted summary saved, and the janitor must never take it
 * before that. So the plan tags every node with that lifetime at launch (cluster.ts
 * `tagMaxLifetime`), and the janitor (find.ts) takes an instance only once it has outlived its own
 * cluster's lifetime plus LIFETIME_MARGIN_MINUTES; an instance without the tag gets the janitor's
 * fixed limit (`max-age-minutes`).
 */

/** The tag on every node of a cluster: its `cluster-max-minutes`, as the watchdog was told. */
export const LIFETIME_TAG = "mcs-max-minutes";

/**
 * The janitor's margin past a cluster's own lifetime. The watchdog counts from its own start,
 * which `ray up` reaches after the head was launched (waiting for SSH, installing Ray: minutes),
 * and its teardown then stops the driver (up to 30 s) and runs `ray down` (a minute or two). It is
 * also the slack the fixed limit always had over the watchdog's default (390 + 30 = 420), so a
 * cluster with the default lifetime is swept exactly when it was before.
 */
export const LIFETIME_MARGIN_MINUTES = 30;

/** The tag's value for a lifetime: the minutes as the watchdog's `--max-minutes` gets them. */
export function lifetimeTagValue(maxMinutes: number): string {
  return String(maxMinutes);
}

/**
 * The tag's minutes, or undefined unless it is a positive number of minutes written as the action
 * writes it (decimal digits, fractions allowed: the inputs' form).
 */
export function parseLifetimeTag(value: string): number | undefined {
  if (!/^(\d+\.?\d*|\.\d+)$/.test(value)) return undefined;
  const minutes = Number(value);
  return minutes > 0 && Number.isFinite(minutes) ? minutes : undefined;
}
