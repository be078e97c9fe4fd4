#!/usr/bin/env bash
# `make demo`: the main job of felis on the embedded (SQLite) datastore.
# As root it runs the conntrack-exhaustion lab (stateful vs doNotTrack vs no rules, all
# programmed through felis apply + felis agent) and exits non-zero when the run does not show
# the expected outcome. Without root, or with FELIS_DEMO=datastore, it walks the seed manifest
# through validate -> apply -> get -> apply again on a fresh datastore.
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

# The lab's defaults, chosen for a clear, fast and honest demo (about 1.5 minutes):
# * the global conntrack table is lowered to 65,536 entries (a quarter of this kind of machine's
#   262,144) so the stateful phase fills it within a few seconds even on a loaded box, and the
#   rest of the phase shows the blackout; the run prints how the real table size would behave
#   and restores the value (also on Ctrl-C);
# * 20 s phases leave the stateful phase 10+ s of blackout, i.e. several 3 s timeout waves;
# * nftables, felis' default backend (FELIS_DEMO_BACKEND=iptables for the other one).
lab_demo() {
    "${FELIS[@]}" lab run --check \
        --results "${FELIS_DEMO_RESULTS:-lab-results}" \
        --phase-seconds "${FELIS_DEMO_PHASE_SECONDS:-20}" \
        --conntrack-max "${FELIS_DEMO_CONNTRACK_MAX:-65536}" \
        --backend "${FELIS_DEMO_BACKEND:-nftables}"
}

if [[ ${FELIS_DEMO:-lab} == lab ]] && "${FELIS[@]}" lab --help >/dev/null 2>&1 \
    && "${FELIS[@]}" agent --help >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]]; then
        lab_demo
        exit
    fi
    echo "demo: the lab needs root (network namespaces); showing the datastore demo instead" >&2
fi
datastore_demo
