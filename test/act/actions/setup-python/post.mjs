// actions/setup-python (v5) stand-in, post step: the cache save's check that the folders exist.
import { existsSync } from "node:fs";

const paths = JSON.parse(process.env["STATE_cache-paths"] || "[]");
for (const dir of paths) {
  if (!existsSync(dir)) {
    // setup-python's own words (src/cache-save.ts), as the job shows them.
    console.log(
      `::error::Cache folder path is retrieved for pip but doesn't exist on disk: ${dir}. ` +
        "This likely indicates that there are no dependencies to cache. " +
        "Consider removing the cache step if it is not needed.",
    );
    // As core.setFailed does: the exit code, and the process ends once its output is written.
    process.exitCode = 1;
    break;
  }
  console.log(`pip cache folder ${dir} exists: it would be saved`);
}
