#!/usr/bin/env python3
"""Entry point of the Ray driver (`ray submit` copies only this file, so find the package via --plan)."""

import sys
from pathlib import Path


def package_root(argv: list[str]) -> Path:
    for i, arg in enumerate(argv):
        if arg == "--plan" and i + 1 < len(argv):
            return Path(argv[i + 1]) / "pipeline"
        if arg.startswith("--plan="):
            return Path(arg.split("=", 1)[1]) / "pipeline"
    return Path(__file__).resolve().parent


if __name__ == "__main__":
    sys.path.insert(0, str(package_root(sys.argv[1:])))
    from mcs_pipeline.driver import main

    sys.exit(main())
