# variant "gateway_before": the same configuration as "gateway", with
# another build of the module, GATEWAY_MODULE_BEFORE (e.g. an older commit
# built in its own worktree), to compare two designs in one run:
#
#   git worktree add /tmp/before OLD_COMMIT && make -C /tmp/before build
#   GATEWAY_MODULE_BEFORE=/tmp/before/build/ngx_http_gateway_module.so \
#   BENCH_CG_VARIANTS="stock gateway gateway_before" bench/run callgrind
VARIANT_DESC[gateway_before]="ngx_gateway built from another commit (GATEWAY_MODULE_BEFORE), round robin, keepalive 32"

variant_gateway_before_start() {
    [ -f "${GATEWAY_MODULE_BEFORE:-}" ] \
        || die "gateway_before: set GATEWAY_MODULE_BEFORE to a built ngx_http_gateway_module.so"
    GATEWAY_MODULE=$GATEWAY_MODULE_BEFORE gateway_variant_start "$1" "$2" ""
}
