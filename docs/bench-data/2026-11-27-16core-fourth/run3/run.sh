#!/usr/bin/env bash
# 16-core run 3 (session 4): herald at 1221709 (four lanes), herald-exp = the same with
# HERALD_EXP_INLINE_NS / HERALD_EXP_STICKY_US knobs, herald-peers (bench/).
set -u
ROOT=$PWD
START=$(date +%s)
for b in herald herald-exp herald-peers; do gunzip -c .devbundle/bin/$b.gz > /tmp/$b && chmod +x /tmp/$b; done
export PATH=/tmp:$ROOT/.devbundle/redis:$PATH LD_LIBRARY_PATH=$ROOT/.devbundle/redis
chmod +x $ROOT/.devbundle/redis/redis-server $ROOT/.devbundle/redis/redis-cli
R=/tmp/res; mkdir -p $R
log() { echo "$(date +%T) +$(( $(date +%s) - START ))s $*" | tee -a "$R/log.txt"; }
el() { echo $(( $(date +%s) - START )); }
save() { tar czf $OUT/res.tgz -C $R .; }
nproc > "$R/nproc.txt"; uptime >> "$R/log.txt"
cd /tmp
pub() { local g=$1; log "publish g=$g"; timeout 60 herald bench publish --publishers $g --duration 2s --output json > "$R/publish-g$g.json" 2>> "$R/log.txt" || log "failed $?"; }
e2e() { local bin=$1 name=$2; shift 2; log "e2e $name $*"; env "$@" timeout 40 $bin bench e2e --rate 20000 --duration 3s --output json > "$R/e2e-$name.json" 2>> "$R/log.txt" || log "failed $?"; }
cons() { local name=$1; shift; log "consume $name $*"; timeout 90 herald bench consume --duration 3s --keys 1000 --output json "$@" > "$R/consume-$name.json" 2>> "$R/log.txt" || log "failed $?"; }
pub 16; pub 64; save
for r in 1 2 3 4 5; do e2e herald head-$r; done; save
cons standalone-ordered; cons standalone-unordered --unordered; save
cluster() { local m=$1; shift
  url=$(timeout 60 herald cluster up --masters $m --replicas 0 --port 0 --dir /tmp/c$m --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')
  log "cluster $m: $url"
  cons c$m-ordered --redis "$url" --partitions $((4*m))
  [ "$1" = both ] && cons c$m-unordered --redis "$url" --partitions $((4*m)) --unordered
  timeout 30 herald cluster down --dir /tmp/c$m >> "$R/log.txt" 2>&1; save; }
[ $(el) -lt 200 ] && cluster 6 both
for r in 1 2; do
  [ $(el) -lt 250 ] && { e2e herald-exp noinline-$r HERALD_EXP_INLINE_NS=-1; e2e herald-exp s0-$r HERALD_EXP_STICKY_US=0; }
done; save
[ $(el) -lt 260 ] && { log peers; timeout 75 herald-peers -rounds 2 -duration 2s -herald-events 50000 -peer-events 5000 -redis-server $ROOT/.devbundle/redis/redis-server > "$R/peers.md" 2>> "$R/log.txt" || log "peers failed $?"; save; }
[ $(el) -lt 320 ] && cluster 3 one
log done; save
