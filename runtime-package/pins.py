"""Prints the pins of the packages the frozen runtime is made of, as pyproject.toml states them,
so that the runtime package and the development environment never disagree on a version.

    python pins.py pyproject.toml   ->  fastapi==0.165.0 uvicorn==0.54.0 ...
"""

from __future__ import annotations

import re
import sys
import tomllib

# What runtime/ imports (llama_cpp comes from our own compile) and what freezes it.
FROZEN = ("fastapi", "uvicorn", "jinja2", "xxhash", "prometheus-client", "simsimd", "prompt_toolkit",
          "wcwidth", "pyinstaller")


def pins(pyproject: str) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    declared = [*project["dependencies"],
                *(dep for extra in project.get("optional-dependencies", {}).values()
                  for dep in extra)]
    by_name = {re.split(r"[=<>!~\[ ;]", dep, maxsplit=1)[0].lower(): dep for dep in declared}
    missing = [name for name in FROZEN if name not in by_name]
    if missing:
        raise SystemExit(f"pins: {pyproject} does not pin {', '.join(missing)}")
    return [by_name[name] for name in FROZEN]


if __name__ == "__main__":
    print(" ".join(pins(sys.argv[1])))
