/**
 * Which modules a change affects, for pull-request test evaluations: every module when the
 * pipeline or the action changed, else the modules whose files changed.
 */
const EVERYTHING = /^(pipeline|src|dist)\/|^(action\.yml|package(-lock)?\.json)$/;
const MODULE_FILE = [
  /^configs\/mcs_config_(.+)_(?:level1|level2|oracle)\.ini$/,
  /^configs\/(.+)_aws\.ini$/,
  /^autoscaler\/ray_(.+)_aws\.yaml$/,
  /^deploy_files\/([^/]+)\//,
];

export function affectedModules(changed: string[], known: string[]): string[] {
  if (changed.some((f) => EVERYTHING.test(f))) return [...known];
  const hit = new Set<string>();
  for (const file of changed) {
    for (const pattern of MODULE_FILE) {
      const m = pattern.exec(file)?.[1];
      if (m && known.includes(m)) hit.add(m);
    }
  }
  return known.filter((m) => hit.has(m));
}
