#!/usr/bin/env bash
# The README's first command after set-up: a demo workspace, contacts and events in an embedded SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
dripflow=.venv/bin/dripflow

$dripflow db upgrade
$dripflow validate examples/demo.yaml
$dripflow apply examples/demo.yaml
$dripflow contacts import examples/demo-contacts.csv --list newsletter --rejects out/demo-rejects.csv
$dripflow contacts export --output out/demo-contacts-export.csv
echo
echo "Demo workspace applied to ${DRIPFLOW_DATABASE_URL:-sqlite:///./dripflow.db}."
echo "Exported contacts: out/demo-contacts-export.csv   rejected rows: out/demo-rejects.csv"
