#!/bin/sh
# Install with the test extra, then run the tests (.ci/run runs the same command).
scripts/install.sh test && .venv/bin/python -m pytest
