# variant "gateway_p2c": the "gateway" variant with gateway_balance p2c.
VARIANT_DESC[gateway_p2c]="ngx_gateway (Redis registry), power of two choices on outstanding requests, weighted, keepalive 32"

variant_gateway_p2c_start() { gateway_variant_start "$1" "$2" "gateway_balance p2c;"; }
