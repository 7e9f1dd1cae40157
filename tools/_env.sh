# Shared by build_book.sh and run_tests.sh: make sure a Python environment with everything in
# requirements.txt and pdltlib (editable) is active. Inside an active virtualenv it installs
# there; otherwise it creates and uses .venv in the repository.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
# executed chapters draw text progress bars (no browser updates widgets there)
export PDLT_PROGRESS=text
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -r requirements.txt -e .
