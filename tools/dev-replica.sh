#!/usr/bin/env bash
# Starts a development replica on a fresh data file, for trying the JSON client by hand:
#
#   tools/dev-replica.sh [port]            # default port 3001, cluster 1
#   ledger client --cluster 1 --addresses 3001 create_accounts < accounts.jsonl
#
# The data file lives in target/dev-replica/ and is removed when the replica stops (Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
port="${1:-3001}"
cluster=1
directory=target/dev-replica
mkdir -p "$directory"
file="$directory/replica-$port.ledger"
cargo build --release --quiet
rm -f "$file"
./target/release/ledger format --cluster "$cluster" --development "$file"
trap 'rm -f "$file"' EXIT
echo "replica of cluster $cluster on 127.0.0.1:$port; try:" >&2
echo "  echo '{\"id\": \"1\", \"ledger\": 1, \"code\": 1}' | ./target/release/ledger client --cluster $cluster --addresses $port create_accounts" >&2
./target/release/ledger start --development --addresses "127.0.0.1:$port" "$file"
