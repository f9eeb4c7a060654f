#!/usr/bin/env bash
# The README's first command after set-up: a demo workspace, contacts and events in an embedded SQLite,
# the demo events through the real engine on a virtual clock (`dripflow simulate`), then the server
# itself (`dripflow serve`: HTTP API and scheduler) on that database until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
dripflow=.venv/bin/dripflow

$dripflow db upgrade
$dripflow validate examples/demo.yaml
$dripflow apply examples/demo.yaml
$dripflow contacts import examples/demo-contacts.csv --list newsletter --rejects out/demo-rejects.csv
$dripflow contacts export --output out/demo-contacts-export.csv
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
key=$($dripflow keys create --role admin --label demo)
port=${DRIPFLOW_PORT:-8000}
cat <<EOT
Starting the server (API, scheduler, capture outbox) — stop it with Ctrl-C. Try, in another shell:
  curl -s -H "Authorization: Bearer $key" -H 'content-type: application/json' \\
    -d '{"type": "list.subscribed", "contact": {"email": "you@example.com", "first_name": "You"}, "list": "customers"}' \\
    http://127.0.0.1:$port/v1/events
  curl -s -H "Authorization: Bearer $key" http://127.0.0.1:$port/v1/contacts/you@example.com/explain
  $dripflow outbox list          # the dev inbox: what the engine built
API docs: http://127.0.0.1:$port/docs   (admin key for this demo: $key)
EOT
exec $dripflow serve --port "$port" --dev-secret
