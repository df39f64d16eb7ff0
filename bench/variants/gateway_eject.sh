# variants "gateway_eject" and "gateway_failures": the gateway variant with
# passive ejection (gateway_eject, its defaults), and with ejection and a
# retry budget (gateway_retry_budget, its defaults): what the failure
# handling costs per request (callgrind: BENCH_CG_VARIANTS="stock gateway
# gateway_failures") and what ejection does when an instance dies (the
# failover scenario).
VARIANT_DESC[gateway_eject]="ngx_gateway, round robin, gateway_eject"
VARIANT_DESC[gateway_failures]="ngx_gateway, round robin, gateway_eject + gateway_retry_budget"

variant_gateway_eject_start() { gateway_variant_start "$1" "$2" "gateway_eject;"; }
variant_gateway_failures_start() {
    gateway_variant_start "$1" "$2" "gateway_eject; gateway_retry_budget;"
}
