#!/usr/bin/env bash
# Run every test: lint, pdltlib's unit tests and every chapter through nbmake (two workers),
# then the book build with Sphinx warnings as errors, reusing the chapter executions, then the
# checks of the built HTML (files, and every page in headless Chromium).
source "$(dirname "$0")/_env.sh"
bash tools/install_chromium.sh
ruff check .
ruff format --check pdltlib tests tools benchmarks
python tools/sync_notebooks.py --check
python tools/vendor_mathjax.py
# chapters run from copies (nbmake --overwrite writes their outputs; it skips _build/ paths)
rm -rf _nbexec && mkdir -p _nbexec && cp notebooks/*.ipynb _nbexec/
python -m pytest -n "${PYTEST_WORKERS:-2}" tests _nbexec \
  --nbmake --nbmake-timeout=900 --overwrite -p no:cacheprovider
python tools/cache_executions.py _nbexec
jupyter-book build . --warningiserror --keep-going
python tools/check_build.py
python tools/check_browser.py
