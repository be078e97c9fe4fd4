#!/usr/bin/env bash
# Bring a fresh Debian 12 machine (as root) or an existing checkout to a runnable state:
# Debian packages the kernel tests, the lab and the deploy checks (promtool) need, uv, and the
# locked virtualenv in .venv.
# Idempotent: every step checks before it acts, so `make` twice in a row does no work the second time.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
    iptables nftables ipset conntrack iproute2 memcached
    gcc libc6-dev python3 python3-venv procps kmod etcd-server etcd-client
    prometheus clang llvm libbpf-dev bpftool ethtool
)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "bootstrap: missing Debian packages (${missing[*]}); run as root to install them" >&2
        exit 1
    fi
    echo "bootstrap: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Only promtool is wanted (the alert rule and dashboard tests); the package also starts a
    # Prometheus server, which has no business on a test machine. Stopped only when installed
    # here, so a Prometheus the operator runs on purpose is left alone.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [[ -d /run/systemd/system ]]; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
fi

# uv is not packaged for Debian 12; it comes from PyPI into a private tool venv so that
# `uv sync` never manages (or removes) the tool that runs it.
if command -v uv >/dev/null 2>&1; then
    UV=$(command -v uv)
else
    UV=.tools/bin/uv
    if [[ ! -x $UV ]]; then
        echo "bootstrap: installing uv into .tools"
        python3 -m venv .tools
        .tools/bin/pip install -q --disable-pip-version-check uv
    fi
fi

# --frozen: the lock file is the truth; a drifted pyproject fails loudly instead of re-resolving.
"$UV" sync --frozen --all-extras --quiet --python python3
