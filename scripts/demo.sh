#!/usr/bin/env bash
# The README's first command after set-up: a demo workspace, contacts and events in an embedded SQLite,
# the demo events through the real engine on a virtual clock (`dripflow simulate`), then the server
# itself on that database until Ctrl-C: `dripflow serve --demo` (HTTP API and scheduler) with a live
# workspace whose sequence counts in minutes (examples/demo-live.yaml). Safe to run again: the
# database keeps both workspaces, and each start of the server subscribes three new contacts.
set -euo pipefail
cd "$(dirname "$0")/.."
dripflow=.venv/bin/dripflow

$dripflow db upgrade
$dripflow validate examples/demo.yaml
$dripflow apply examples/demo.yaml
$dripflow contacts import examples/demo-contacts.csv --workspace acme --list newsletter --rejects out/demo-rejects.csv
$dripflow contacts export --workspace acme --output out/demo-contacts-export.csv
echo
echo "Simulating examples/demo-events.jsonl until 2027-12-31 (log: out/demo-simulation.jsonl):"
$dripflow simulate examples/demo.yaml --events examples/demo-events.jsonl --until 2027-12-31T00:00:00Z \
  --out out/demo-simulation.jsonl --state out/demo-state.json
head -n 12 out/demo-simulation.jsonl
echo "… $(wc -l < out/demo-simulation.jsonl) records in all"
echo
echo "Why did ann@example.com get what she got?"
$dripflow simulate examples/demo.yaml --events examples/demo-events.jsonl --until 2027-12-31T00:00:00Z \
  --explain ann@example.com
echo
echo "Demo workspace applied to ${DRIPFLOW_DATABASE_URL:-sqlite:///./dripflow.db}."
echo "Exported contacts: out/demo-contacts-export.csv   rejected rows: out/demo-rejects.csv"
echo
port=${DRIPFLOW_PORT:-8000}
echo "Starting the live demo server on http://127.0.0.1:$port (dripflow serve --demo):"
exec $dripflow serve --demo --port "$port" --log-format text
