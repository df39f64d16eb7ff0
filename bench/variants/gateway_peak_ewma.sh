# variant "gateway_peak_ewma": the "gateway" variant with gateway_balance peak_ewma.
VARIANT_DESC[gateway_peak_ewma]="ngx_gateway (Redis registry), peak EWMA of response time x (outstanding + 1), p2c, decay 10s, keepalive 32"

variant_gateway_peak_ewma_start() { gateway_variant_start "$1" "$2" "gateway_balance peak_ewma;"; }
