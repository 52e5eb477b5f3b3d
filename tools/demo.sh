#!/bin/sh
# Builds graphd and runs it on the embedded default data directory
# (var/demo), loading a generated demo seller network, clustering it and
# writing its HTML report (var/demo-report.html) the first time.
# Safe to run again: the build is incremental and the data is loaded once.
#
#   tools/demo.sh                     serve on 127.0.0.1:7419
#   GRAPHD_LISTEN=127.0.0.1:9000 tools/demo.sh
#   GRAPHD_HTTP_LISTEN=127.0.0.1:9080 tools/demo.sh   (the console; default :7480)
#   GRAPHD_DATA=/srv/graphd tools/demo.sh
set -eu
cd "$(dirname "$0")/.."
root=$PWD

tools/deps.sh
[ -f build/build.ninja ] || meson setup build
ninja -C build >/dev/null

data=${GRAPHD_DATA:-$root/var/demo}
listen=${GRAPHD_LISTEN:-127.0.0.1:7419}
http_listen=${GRAPHD_HTTP_LISTEN:-127.0.0.1:7480}
graphd=build/graphd/graphd
graphctl=build/tools/graphctl/graphctl

if [ ! -f "$data/.demo-loaded" ]; then
  echo "loading the demo data set into $data ..."
  input=$root/var/demo-input
  build/tools/gen/sellergen --sellers 5000 --seed 1 --out "$input"
  mkdir -p "$data"
  log=$root/var/demo-load.log
  "$graphd" --data "$data" --listen 127.0.0.1:0 >"$root/var/demo-load.out" 2>"$log" &
  pid=$!
  addr=""
  for _ in $(seq 1 100); do
    addr=$(sed -n 's/^listening on //p' "$root/var/demo-load.out" 2>/dev/null || true)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    echo "graphd did not start; see $log" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  "$graphctl" --addr "$addr" ingest "$input/entities.csv" "$input/links.csv"
  # A first clustering snapshot and its HTML report.
  "$graphctl" --addr "$addr" cluster --name demo --no-progress
  "$graphctl" --addr "$addr" report --top 10 -o "$root/var/demo-report.html"
  kill -TERM "$pid"
  wait "$pid"
  touch "$data/.demo-loaded"
fi

cat <<MSG
graphd: serving $data on $listen (Ctrl-C stops it cleanly).
The investigator console: http://$http_listen/ (search seller s86, expand it).
graphctl is $graphctl; for a shell with it on PATH: meson devenv -C build
Try, from another terminal (s86: a seller labelled counterfeit, in ring 1;
addr-71040cb6: the ring's warehouse; cluster 62: the ring):
  $graphctl --addr $listen stats
  $graphctl --addr $listen get seller s86
  $graphctl --addr $listen linked seller s86 --hops 2
  $graphctl --addr $listen get address addr-71040cb6
  $graphctl --addr $listen cluster 62
  $graphctl --addr $listen clusters --min-size 3 --limit 10
  $graphctl --addr $listen export cluster 62 -o ring.graphml
The first snapshot's report: var/demo-report.html
MSG
exec "$graphd" --data "$data" --listen "$listen" --http-listen "$http_listen"
