# variants "gateway_eject", "gateway_failures", "gateway_limit",
# "gateway_max_requests" and "gateway_all": the gateway variant with
# passive ejection (gateway_eject, its defaults); with ejection and a retry
# budget (gateway_retry_budget, its defaults); with both and a concurrency
# limit (gateway_max_requests, high enough never to reject); with the
# limit alone; and with all of them plus active health checks
# (gateway_health_check, probing every 60 s, so that the measured phase of
# the callgrind scenario sees the request path's filter, not the probes).
# What the failure handling costs per request (callgrind:
# BENCH_CG_VARIANTS="stock gateway gateway_failures gateway_limit
# gateway_all") and what ejection does when an instance dies (the failover
# scenario).
VARIANT_DESC[gateway_eject]="ngx_gateway, round robin, gateway_eject"
VARIANT_DESC[gateway_failures]="ngx_gateway, round robin, gateway_eject + gateway_retry_budget"
VARIANT_DESC[gateway_limit]="ngx_gateway, round robin, gateway_eject + gateway_retry_budget + gateway_max_requests 10000"
VARIANT_DESC[gateway_max_requests]="ngx_gateway, round robin, gateway_max_requests 10000"
VARIANT_DESC[gateway_all]="ngx_gateway, round robin, gateway_eject + gateway_retry_budget + gateway_max_requests 10000 + gateway_health_check interval=60s"

variant_gateway_eject_start() { gateway_variant_start "$1" "$2" "gateway_eject;"; }
variant_gateway_failures_start() {
    gateway_variant_start "$1" "$2" "gateway_eject; gateway_retry_budget;"
}
variant_gateway_limit_start() {
    gateway_variant_start "$1" "$2" \
        "gateway_eject; gateway_retry_budget; gateway_max_requests 10000;"
}
variant_gateway_max_requests_start() {
    gateway_variant_start "$1" "$2" "gateway_max_requests 10000;"
}
variant_gateway_all_start() {
    gateway_variant_start "$1" "$2" \
        "gateway_eject; gateway_retry_budget; gateway_max_requests 10000; gateway_health_check interval=60s;"
}
