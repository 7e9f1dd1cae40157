#!/usr/bin/env bash
# Build the HTML book, executing every chapter (outputs cached in _build/.jupyter_cache).
# Result: _build/html/index.html
source "$(dirname "$0")/_env.sh"
python tools/sync_notebooks.py
python tools/vendor_mathjax.py
jupyter-book build . --keep-going
echo "book built: $(pwd)/_build/html/index.html"
