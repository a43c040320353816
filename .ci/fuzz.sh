#!/usr/bin/env bash
# CI: fuzz every file parser (fuzz/run.py) for 10,000 executions each, two targets at a time,
# bounded to about two minutes; fails on any finding (the failing inputs and logs are left in
# fuzz/findings/). Needs the test extra (atheris); skips only where atheris has no wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c "import atheris" 2>/dev/null; then
  where="$(uname -s) $(uname -m), $(python -c 'import platform; print(platform.python_implementation(), platform.python_version())')"
  # the platforms of pyproject.toml's marker: there atheris has a wheel and must be installed
  if python -c 'import platform, sys; sys.exit(not (sys.platform == "linux" and platform.machine() == "x86_64" and platform.python_implementation() == "CPython" and sys.version_info < (3, 14)))'; then
    echo "CI fuzz: atheris is not installed on $where, where it must run: pip install '.[test]'" >&2
    exit 1
  fi
  echo "CI fuzz: SKIPPED: atheris has no wheel for $where (see the test extra in pyproject.toml)"
  exit 0
fi

start=$SECONDS
python fuzz/run.py --runs 10000 --jobs 2 --time-budget 110
echo "CI fuzz: done in $((SECONDS - start)) s"
