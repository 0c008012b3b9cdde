#!/usr/bin/env bash
# 16-core run for issues 12 and 18: consume (standalone, 1/3/6 masters, ordered/unordered, GOMAXPROCS),
# publish (16/64 goroutines) and e2e. Each bench prints Herald beside raw Redis from the same run.
set -u
ROOT=$PWD
export PATH=$ROOT/.devbundle/redis:$ROOT/.devbundle/bin:$PATH LD_LIBRARY_PATH=$ROOT/.devbundle/redis
mkdir -p "$OUT"
log() { echo "$(date +%T) $*" | tee -a "$OUT/log.txt"; }
nproc > "$OUT/nproc.txt"; lscpu | head -20 > "$OUT/lscpu.txt" 2>/dev/null
cd /tmp
bench() { local name=$1; shift; log "consume $name: $*"
  timeout 40 herald bench consume --duration 3s --keys 1000 --output json "$@" > "$OUT/$name.json" 2>> "$OUT/log.txt" || log "$name failed ($?)"; }
bench consume-standalone-ordered
bench consume-standalone-unordered --unordered
for m in 6 3 1; do
  dir=/tmp/c$m; rm -rf "$dir"
  url=$(timeout 40 herald cluster up --masters $m --replicas 0 --port 0 --dir "$dir" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])') || { log "cluster $m up failed"; continue; }
  log "cluster $m: $url"
  bench consume-c$m-ordered --redis "$url" --partitions $((4*m))
  [ $m = 6 ] && bench consume-c$m-unordered --redis "$url" --partitions $((4*m)) --unordered
  timeout 30 herald cluster down --dir "$dir" >> "$OUT/log.txt" 2>&1
done
for g in 2 16; do log "GOMAXPROCS=$g"
  GOMAXPROCS=$g timeout 40 herald bench consume --duration 3s --keys 1000 --output json > "$OUT/consume-gomaxprocs-$g.json" 2>> "$OUT/log.txt" || log "gmp $g failed"; done
for g in 16 64; do log "publish $g"
  timeout 60 herald bench publish --publishers $g --duration 2s --output json > "$OUT/publish-g$g.json" 2>> "$OUT/log.txt" || log "publish $g failed ($?)"; done
for r in 1 2 3; do log "e2e $r"
  timeout 30 herald bench e2e --rate 20000 --duration 3s --output json > "$OUT/e2e-$r.json" 2>> "$OUT/log.txt" || log "e2e $r failed ($?)"; done
log done
