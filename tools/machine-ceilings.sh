#!/usr/bin/env bash
# Measures this machine's storage ceilings the way docs/BENCHMARKS.md ("Machine ceilings") did:
# sequential 1 MiB O_DIRECT write bandwidth, and 1 MiB O_DIRECT write + fdatasync latency, with
# fio. Run it in a directory on the filesystem the data file will live on (ext4, xfs).
#
#   tools/machine-ceilings.sh [directory]    # default: target/fio-bench
set -euo pipefail
directory="${1:-target/fio-bench}"
if ! command -v fio >/dev/null 2>&1; then
  echo "fio is missing: apt-get install -y fio" >&2
  exit 1
fi
mkdir -p "$directory"
trap 'rm -f "$directory/seq.data" "$directory/wal.data"' EXIT
echo "== $(date -u) on $(nproc) cores, $(uname -r), $(df -T "$directory" | awk 'NR==2 {print $1, $2}')"

echo "== sequential 1 MiB O_DIRECT writes, queue depth 8 (bandwidth)"
fio --name=prewrite --filename="$directory/seq.data" --size=2G --bs=1M --rw=write --direct=1 \
    --ioengine=io_uring --iodepth=8 --end_fsync=1 --output-format=terse >/dev/null
fio --name=seqwrite --filename="$directory/seq.data" --size=2G --bs=1M --rw=write --direct=1 \
    --ioengine=io_uring --iodepth=8 --time_based --runtime=10 --end_fsync=1 | grep -E "WRITE:"

echo "== 1 MiB O_DIRECT write + fdatasync, one at a time, over a written file (latency)"
fio --name=prewrite --filename="$directory/wal.data" --size=256M --bs=1M --rw=write --direct=1 \
    --ioengine=io_uring --end_fsync=1 --output-format=terse >/dev/null
fio --name=write_fdatasync --filename="$directory/wal.data" --size=256M --bs=1M --rw=write \
    --direct=1 --ioengine=io_uring --iodepth=1 --fdatasync=1 --time_based --runtime=10 \
    | grep -E "IOPS|clat \(|sync \(|50.00th|99.00th" | head -12
