#!/bin/sh
# Installs the Debian 12 packages graphd needs, if any is missing.
# Safe to run any number of times: it runs apt-get only when something is
# missing, and then 'apt-get update' once before 'apt-get install'.
#
#   tools/deps.sh          build + run packages
#   tools/deps.sh --test   also the test, sanitizer and benchmark packages
set -eu

pkgs="meson ninja-build pkg-config gcc libc6-dev
      libigraph-dev liblmdb-dev lmdb-utils libprotobuf-c-dev protobuf-c-compiler
      libgrpc-dev libssl-dev libjson-c-dev grpc-proto libprotobuf-dev
      libmicrohttpd-dev libcurl4-openssl-dev help2man node-d3 libarchive-dev"
if [ "${1:-}" = "--test" ]; then
  pkgs="$pkgs protobuf-compiler protobuf-compiler-grpc python3 python3-grpcio
        python3-protobuf python3-pytest python3-igraph valgrind clang
        libclang-rt-14-dev openssl python3-pandas
        python3-prometheus-client chromium chromium-driver
        python3-selenium"
fi

missing=""
for p in $pkgs; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

echo "installing missing Debian packages:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
