#!/usr/bin/env bash
# Builds the bench-only selection module (never part of the product .so)
# against Debian's nginx-dev, the way the Makefile builds the gateway:
# nginx's configure with Debian's flags, once, into its own build dir.
#
#   bench/selection/build.sh [BUILD_DIR]   default: build/selbench
#
# Prints the path of ngx_http_gateway_selbench_module.so.  The same build
# makes the gateway's own module next to it, with its functions exported
# (-DNGX_HTTP_GATEWAY_EXPORTED: the product's .so hides them), which the
# bench module calls: load that one first.
set -euo pipefail

SEL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SEL_DIR/../.." && pwd)
BUILD=${1:-$REPO/build/selbench}
NGX_SRC=${NGX_SRC:-/usr/share/nginx/src}
SO=$BUILD/ngx_http_gateway_selbench_module.so

cc_opt="$(cd "$REPO" && dpkg-buildflags --get CFLAGS) -fPIC $(cd "$REPO" && dpkg-buildflags --get CPPFLAGS) -DNGX_HTTP_GATEWAY_EXPORTED=1"
ld_opt="$(cd "$REPO" && dpkg-buildflags --get LDFLAGS) -fPIC"

mkdir -p "$BUILD"
args=$(printf '%s\n' "cc-opt: $cc_opt" "ld-opt: $ld_opt" "ngx-src: $NGX_SRC" "config: $(sha256sum "$SEL_DIR/config" "$REPO/config")")

if [ ! -f "$BUILD/Makefile" ] || [ "$(cat "$BUILD/.configure-args" 2>/dev/null)" != "$args" ]; then
    echo "selbench: configure nginx $NGX_SRC -> $BUILD (about 20 s, once)" >&2
    (
        cd "$NGX_SRC" && . ./conf_flags &&
        env -u CFLAGS -u CPPFLAGS -u LDFLAGS ./configure \
            --with-cc-opt="$cc_opt" --with-ld-opt="$ld_opt" \
            "${NGX_CONF_FLAGS[@]}" \
            --add-dynamic-module="$REPO" \
            --add-dynamic-module="$SEL_DIR" \
            --builddir="$BUILD"
    ) > "$BUILD/configure.log" 2>&1 \
        || { tail -n 30 "$BUILD/configure.log" >&2; echo "selbench: configure failed" >&2; exit 1; }
    printf '%s\n' "$args" > "$BUILD/.configure-args"
fi

env -u CFLAGS -u CPPFLAGS -u LDFLAGS \
    make --no-print-directory -f "$BUILD/Makefile" -C "$NGX_SRC" modules >&2
test -f "$SO"
echo "$SO"
