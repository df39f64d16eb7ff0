# variants "gateway_health", "gateway_byname" and "gateway_byname_health":
# the gateway variant with active health checks (probing every 60 s, so
# that the measured phase of the callgrind scenario sees the request
# path, not the probes); with the service name from a variable (a map of
# the URI that always gives "users"); and with both, where the first
# request attaches the service to the check.  What a health check of a
# variable name costs per request (callgrind: BENCH_CG_VARIANTS="gateway
# gateway_health gateway_byname gateway_byname_health").
VARIANT_DESC[gateway_health]="ngx_gateway, round robin, gateway_health_check interval=60s"
VARIANT_DESC[gateway_byname]="ngx_gateway, round robin, gateway_service \$gw_service (a map)"
VARIANT_DESC[gateway_byname_health]="ngx_gateway, round robin, gateway_service \$gw_service (a map) + gateway_health_check interval=60s"

variant_gateway_health_start() {
    gateway_variant_start "$1" "$2" "gateway_health_check interval=60s;"
}
variant_gateway_byname_start() {
    GW_SERVICE='$gw_service' \
    GW_HTTP_EXTRA='map $uri $gw_service { default users; }' \
        gateway_variant_start "$1" "$2" ""
}
variant_gateway_byname_health_start() {
    GW_SERVICE='$gw_service' \
    GW_HTTP_EXTRA='map $uri $gw_service { default users; }' \
        gateway_variant_start "$1" "$2" "gateway_health_check interval=60s;"
}
