# variant "gateway_least_request": the "gateway" variant with gateway_balance least_request.
VARIANT_DESC[gateway_least_request]="ngx_gateway (Redis registry), least outstanding requests (all workers), weighted, keepalive 32"

variant_gateway_least_request_start() { gateway_variant_start "$1" "$2" "gateway_balance least_request;"; }
