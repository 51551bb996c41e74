#!/usr/bin/env bash
# Every test of the book, in four steps. `make test` creates .venv and then runs this.
#   1. kqvlib, the exercise checkers, data loading       (pytest tests/)
#   2. every notebook re-executed and compared with its stored outputs (pytest --nbval, strict)
#   3. the HTML book built from the stored outputs, any warning an error (jupyter-book -W)
#   4. every page of the HTML book opened in headless Chromium, and chapter 14's explorer also in
#      JupyterLab (pytest tests/browser)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin

# Tiny Shakespeare: a copy beside the checkout (as in CI) is used instead of downloading.
if [ -z "${KQV_TINYSHAKESPEARE:-}" ] && [ -f ../shared/data/tinyshakespeare.txt ]; then
  KQV_TINYSHAKESPEARE="$(cd ../shared/data && pwd)/tinyshakespeare.txt"
  export KQV_TINYSHAKESPEARE
fi

step() { printf '\n=== %s  (%s)\n' "$1" "$(date +%T)"; }
start=$SECONDS

step "1/4 unit tests"
$BIN/pytest -q tests --ignore=tests/browser

step "2/4 notebooks under nbval (strict)"
nb_start=$SECONDS
# Chapters 11, 14 and 15 use the reference model shipped inside kqvlib: no notebook needs another's output.
$BIN/pytest -q --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg \
  -n 2 --dist loadfile book
echo "notebooks: $((SECONDS - nb_start)) s"

step "3/4 HTML book (jupyter-book build -W --keep-going)"
book_start=$SECONDS
rm -rf _build/html
$BIN/jupyter-book build . -W --keep-going -q
echo "book build: $((SECONDS - book_start)) s"

step "4/4 the HTML book in headless Chromium"
$BIN/pytest -q tests/browser

echo "all tests passed in $((SECONDS - start)) s"
