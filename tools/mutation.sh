#!/usr/bin/env bash
# Mutation testing of the pure money core: money.py, ids.py, wire/sign.py, engine/states.py and
# engine/limiter.py against their fast unit tests ([tool.mutmut] in pyproject.toml). Fails when a
# mutant survives that tools/mutation-accepted.txt does not list with its reason.
#
#   tools/mutation.sh              a fresh run, then the check (about 4 minutes on 2 cores)
#   tools/mutation.sh --suggest    ...and print list lines for survivors not accepted yet
#
# Runs with the python on PATH (an activated venv with mutmut: pip install -e '.[mutation]'), or
# PYTHON=/path/to/python. MUTATION_CHILDREN sets the parallel mutants (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c 'import mutmut' 2>/dev/null; then
  echo "mutmut is not installed for $PYTHON: pip install -e '.[mutation]'" >&2
  exit 2
fi
exec "$PYTHON" tools/mutation_check.py tools/mutation-accepted.txt --run \
  --max-children "${MUTATION_CHILDREN:-2}" "$@"
