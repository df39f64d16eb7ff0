# variants "gateway_hash", "gateway_ketama", "gateway_maglev": the gateway
# variant with gateway_balance hash on the request's URI (the load clients
# send one URI: every request takes the same instance; what is measured is
# the cost of the key, its CRC32 and the lookup).  E.g.
#   BENCH_VARIANTS="stock gateway gateway_hash gateway_ketama gateway_maglev" bench/run throughput
#   BENCH_CG_VARIANTS="stock gateway gateway_hash gateway_ketama gateway_maglev" bench/run callgrind
VARIANT_DESC[gateway_hash]="ngx_gateway (Redis registry), hash \$request_uri (rendezvous), keepalive 32"
VARIANT_DESC[gateway_ketama]="ngx_gateway (Redis registry), hash \$request_uri consistent=ketama, keepalive 32"
VARIANT_DESC[gateway_maglev]="ngx_gateway (Redis registry), hash \$request_uri consistent=maglev, keepalive 32"

variant_gateway_hash_start() { gateway_variant_start "$1" "$2" 'gateway_balance hash $request_uri;'; }
variant_gateway_ketama_start() { gateway_variant_start "$1" "$2" 'gateway_balance hash $request_uri consistent=ketama;'; }
variant_gateway_maglev_start() { gateway_variant_start "$1" "$2" 'gateway_balance hash $request_uri consistent=maglev;'; }
