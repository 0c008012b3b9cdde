#!/usr/bin/env bash
# 16-core run (session 7, same build as run5): consume and publish, SpinWait auto against off, alternated.
set -u
ROOT=$PWD
START=$(date +%s)
gunzip -c .devbundle/bin/herald.gz > /tmp/herald && chmod +x /tmp/herald
export PATH=/tmp:$ROOT/.devbundle/redis:$PATH LD_LIBRARY_PATH=$ROOT/.devbundle/redis
chmod +x $ROOT/.devbundle/redis/redis-server $ROOT/.devbundle/redis/redis-cli
R=$OUT; mkdir -p $R
log() { echo "$(date +%T) +$(( $(date +%s) - START ))s $*" | tee -a "$R/log.txt"; }
el() { echo $(( $(date +%s) - START )); }
cd /tmp
cons() { local name=$1; shift; log "consume $name $*"; echo "# $name $*" >> "$R/names.txt"; timeout 60 herald bench consume --duration 3s --keys 1000 --output json "$@" >> "$R/consume.jsonl" 2>> "$R/log.txt" || log "failed $?"; }
pub() { local name=$1; shift; log "publish $name $*"; echo "# $name $*" >> "$R/names.txt"; timeout 60 herald bench publish --publishers 16 --duration 2s --output json "$@" >> "$R/publish.jsonl" 2>> "$R/log.txt" || log "failed $?"; }
for r in 1 2 3; do [ $(el) -lt 120 ] && { cons auto-$r; cons off-$r --spin-wait off; }; done
[ $(el) -lt 150 ] && { pub auto; pub off --spin-wait off; }
log done
