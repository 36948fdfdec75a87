#!/usr/bin/env bash
# Creates .venv and installs the project with its test tools. torch comes first and pinned: an unpinned torch
# would pull the CUDA build; torchvision and timm are never installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[test]"
