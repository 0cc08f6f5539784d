#!/usr/bin/env bash
# Run one scene with the demo module: ray_script.sh MCS_CONFIG SCENE_FILE EVAL_DIR
# The same contract as every module's run script; the demo "performer" needs no GPU/simulator.
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $(basename "$0") MCS_CONFIG SCENE_FILE EVAL_DIR" >&2
    exit 2
fi

# exec, so the driver's timeout signals reach the player itself, not a waiting shell.
exec python3 "$(dirname "$0")/play_scene.py" "$@"
