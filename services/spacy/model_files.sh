#!/bin/sh
# Puts the spaCy pipeline SPACY_MODEL (default en_core_web_sm) into the Python environment PYTHON: run by
# the image build and by `make run`/`make worker`, so both serve the same default model.
# SPACY_MODEL_PACKAGE: a pip requirement providing it instead (an internal index, a wheel URL).
# blank:<lang> and paths need no download.
set -eu
python=${PYTHON:-python}
model=${SPACY_MODEL:-en_core_web_sm}
if [ -n "${SPACY_MODEL_PACKAGE:-}" ]; then
    $python -m pip install -q "$SPACY_MODEL_PACKAGE"
    exit 0
fi
case "$model" in blank:* | /*) exit 0 ;; esac
if ! $python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)" "$model"; then
    $python -m spacy download "$model"
fi
