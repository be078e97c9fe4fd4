#!/usr/bin/env bash
# `make demo`: the main job of felis on the embedded (SQLite) datastore.
# When the lab is available it runs the conntrack-exhaustion lab (stateful vs doNotTrack vs
# no rules); until then, and with FELIS_DEMO=datastore, it walks the seed manifest through
# validate -> apply -> get -> apply again on a fresh datastore.
set -euo pipefail
cd "$(dirname "$0")/.."

FELIS=(.venv/bin/felis)
SEED=examples/memcached-seed.yaml

datastore_demo() {
    local dir
    dir=$(mktemp -d /tmp/felis-demo.XXXXXX)
    trap 'rm -rf "$dir"' RETURN
    local ds="sqlite:///$dir/felis.db"
    echo "== felis validate -f $SEED"
    "${FELIS[@]}" validate -f "$SEED"
    echo "== felis apply -f $SEED (fresh datastore $ds)"
    "${FELIS[@]}" apply -f "$SEED" --datastore "$ds"
    echo "== felis get hostendpoints -o wide"
    "${FELIS[@]}" get hostendpoints -o wide --datastore "$ds"
    echo "== felis get globalnetworkpolicy memcached-server -o yaml"
    "${FELIS[@]}" get globalnetworkpolicy memcached-server -o yaml --datastore "$ds" | tee "$dir/got.yaml"
    echo "== felis apply -f <that output> (must change nothing)"
    "${FELIS[@]}" apply -f "$dir/got.yaml" --datastore "$ds"
    "${FELIS[@]}" get gnp memcached-server -o yaml --datastore "$ds" | diff -u "$dir/got.yaml" - \
        && echo "unchanged: same resourceVersion"
}

if [[ ${FELIS_DEMO:-lab} == lab ]] && "${FELIS[@]}" lab --help >/dev/null 2>&1 \
    && "${FELIS[@]}" agent --help >/dev/null 2>&1; then
    exec "${FELIS[@]}" lab run --results "${FELIS_DEMO_RESULTS:-lab-results}"
fi
datastore_demo
