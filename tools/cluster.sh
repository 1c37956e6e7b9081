#!/usr/bin/env bash
# A local cluster of N replicas on loopback, each its own `ledger start` process:
#
#   tools/cluster.sh start [N] [DIRECTORY] [FIRST_PORT]   # default 3 replicas, target/cluster, 3001
#   tools/cluster.sh status [DIRECTORY]
#   tools/cluster.sh stop [DIRECTORY]
#
# `start` formats a development data file per replica (cluster 1) unless the directory already
# holds them — so a stopped cluster starts again with its data — starts the replicas in the
# background (their logs in DIRECTORY/replica-I.log, their pids in DIRECTORY/replica-I.pid) and
# prints the addresses for clients. `stop` sends SIGTERM to each and waits for it to stop
# cleanly; the data files stay (remove the directory to start afresh). LEDGER names the binary
# (default: build and use target/release/ledger).
set -euo pipefail
cd "$(dirname "$0")/.."
command="${1:-}"
cluster=1

ledger_binary() {
  if [[ -n "${LEDGER:-}" ]]; then
    echo "$LEDGER"
  else
    cargo build --release --quiet
    echo "$PWD/target/release/ledger"
  fi
}

case "$command" in
  start)
    count="${2:-3}"
    directory="${3:-target/cluster}"
    first_port="${4:-3001}"
    if ! [[ "$count" =~ ^[1-6]$ ]]; then
      echo "error: a cluster has 1 to 6 replicas, not '$count'" >&2
      exit 2
    fi
    ledger="$(ledger_binary)"
    mkdir -p "$directory"
    addresses=""
    for ((i = 0; i < count; i++)); do
      addresses+="${addresses:+,}127.0.0.1:$((first_port + i))"
    done
    for ((i = 0; i < count; i++)); do
      file="$directory/replica-$i.ledger"
      if [[ -e "$directory/replica-$i.pid" ]] && kill -0 "$(cat "$directory/replica-$i.pid")" 2>/dev/null; then
        echo "error: replica $i already runs (pid $(cat "$directory/replica-$i.pid")); stop the cluster first" >&2
        exit 1
      fi
      if [[ ! -e "$file" ]]; then
        "$ledger" format --cluster "$cluster" --replica "$i" --replica-count "$count" --development "$file" 2>>"$directory/replica-$i.log"
      fi
    done
    for ((i = 0; i < count; i++)); do
      "$ledger" start --development --addresses "$addresses" "$directory/replica-$i.ledger" \
        >>"$directory/replica-$i.log" 2>&1 &
      echo $! >"$directory/replica-$i.pid"
    done
    # Each replica says when it listens (or why it stopped).
    for ((i = 0; i < count; i++)); do
      for _ in $(seq 1 300); do
        if grep -q "listening on" "$directory/replica-$i.log"; then break; fi
        if ! kill -0 "$(cat "$directory/replica-$i.pid")" 2>/dev/null; then
          echo "error: replica $i stopped; its log ($directory/replica-$i.log) ends:" >&2
          tail -n 5 "$directory/replica-$i.log" >&2
          exit 1
        fi
        sleep 0.1
      done
    done
    echo "cluster $cluster: $count replica(s) at $addresses (logs in $directory/); try:"
    echo "  echo '{\"id\": \"1\", \"ledger\": 1, \"code\": 1}' | $ledger client --cluster $cluster --addresses $addresses create_accounts"
    ;;
  status)
    directory="${2:-target/cluster}"
    for pid_file in "$directory"/replica-*.pid; do
      [[ -e "$pid_file" ]] || { echo "no cluster in $directory"; exit 0; }
      replica="$(basename "$pid_file" .pid)"
      if kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        echo "$replica: running (pid $(cat "$pid_file")); $(grep " in view " "$directory/$replica.log" | tail -n 1 | sed 's/^info: //')"
      else
        echo "$replica: stopped"
      fi
    done
    ;;
  stop)
    directory="${2:-target/cluster}"
    for pid_file in "$directory"/replica-*.pid; do
      [[ -e "$pid_file" ]] || continue
      pid="$(cat "$pid_file")"
      if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
      rm -f "$pid_file"
    done
    echo "stopped the cluster in $directory (its data files stay)"
    ;;
  *)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
