#!/usr/bin/env bash
# Installs the Debian packages that building, testing and running ngx_gateway
# need, and nothing when they are all there (fast and silent then).
#
#   scripts/deps.sh            build + test + demo packages
#   scripts/deps.sh bench      also the benchmark peers (bench/)
#   scripts/deps.sh [bench] PKG...   also these packages
#   scripts/deps.sh --check [bench]  only report; exit 1 when some are missing
#
# As root: apt-get update (only when something is missing) and
# apt-get install -y --no-install-recommends.  Not root: prints the exact
# apt-get line to run and exits 1.
#
# Services: installing nginx, redis-server or haproxy would start their
# system-wide daemons (nginx on port 80).  The tests never use them (they run
# their own processes on free ports), so while we install we forbid service
# starts with a temporary /usr/sbin/policy-rc.d, and stop anything that was
# started anyway, but only for packages this script installed.
set -euo pipefail

PKGS=(
    # build: Debian's nginx, its headers/configure, hiredis, the toolchain
    nginx nginx-dev libhiredis-dev gcc make libc6-dev dpkg-dev
    # tests: Redis, njs for demo/test backends, cmocka, valgrind, perl/prove
    redis-server redis-tools libnginx-mod-http-js libcmocka-dev valgrind
    perl curl openssl
    # fuzz targets (t/fuzz): clang 14 and its libFuzzer runtime
    clang libclang-rt-14-dev
    # promtool checks the metrics page (t/60-metrics.t); a headless browser
    # drives the dashboard (t/62-dashboard.t)
    prometheus chromium
    # the OTLP test collector (t/collector): node, and npm for its packages
    nodejs
)
# npm: Debian's package, unless the nodejs installed brings its own
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
BENCH_PKGS=(wrk haproxy libnginx-mod-http-lua lua-resty-core lua-nginx-redis
            gnuplot-nox libnginx-mod-http-echo)
SERVICES=(nginx redis-server haproxy prometheus)

check_only=0
want=("${PKGS[@]}")
for arg in "$@"; do
    case "$arg" in
        --check) check_only=1 ;;
        bench|--bench|deps-bench) want+=("${BENCH_PKGS[@]}") ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "deps.sh: unknown option $arg" >&2; exit 2 ;;
        *) want+=("$arg") ;;
    esac
done

# one dpkg-query for all; a package unknown to dpkg prints nothing on stdout
missing_pkgs() {
    local installed
    installed=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "$@" \
                2>/dev/null | awk '$1 == "ii" { print $2 }') || true
    local p
    for p in "$@"; do
        grep -qxF "$p" <<<"$installed" || echo "$p"
    done
}

mapfile -t missing < <(missing_pkgs "${want[@]}")

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

install_cmd=(apt-get install -y --no-install-recommends "${missing[@]}")

echo "deps.sh: missing Debian packages: ${missing[*]}" >&2

if [ "$check_only" = 1 ]; then
    exit 1
fi

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: not root; install them with:" >&2
    echo "    sudo apt-get update && sudo ${install_cmd[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# services that we are about to install (only those are stopped afterwards)
new_services=()
for s in "${SERVICES[@]}"; do
    for m in "${missing[@]}"; do
        [ "$m" = "$s" ] && new_services+=("$s")
    done
done

policy=/usr/sbin/policy-rc.d
own_policy=0
cleanup() {
    if [ "$own_policy" = 1 ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT
if [ "${#new_services[@]}" -gt 0 ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# temporary, from ngx_gateway scripts/deps.sh\nexit 101\n' \
        > "$policy"
    chmod 755 "$policy"
    own_policy=1
fi

apt_opts=(-o DPkg::Lock::Timeout=300 -q)
echo "deps.sh: apt-get update" >&2
apt-get "${apt_opts[@]}" update >&2
echo "deps.sh: ${install_cmd[*]}" >&2
apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}" >&2

cleanup
own_policy=0

# Belt and braces: if an install started a daemon anyway (a pre-existing
# policy-rc.d allowed it), stop and disable it.
for s in "${new_services[@]}"; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        systemctl disable --now "$s" >/dev/null 2>&1 || true
    elif [ -x "/etc/init.d/$s" ]; then
        "/etc/init.d/$s" stop >/dev/null 2>&1 || true
        command -v update-rc.d >/dev/null && \
            update-rc.d "$s" disable >/dev/null 2>&1 || true
    fi
done

mapfile -t still < <(missing_pkgs "${want[@]}")
if [ "${#still[@]}" -gt 0 ]; then
    echo "deps.sh: still missing after install: ${still[*]}" >&2
    exit 1
fi
echo "deps.sh: installed ${missing[*]}" >&2
