# variant "gateway_random": the gateway variant with weighted random.
VARIANT_DESC[gateway_random]="ngx_gateway (Redis registry), weighted random, keepalive 32"

variant_gateway_random_start() { gateway_variant_start "$1" "$2" "gateway_balance random;"; }
