# variants "gateway_trace1", "gateway_trace100", "gateway_trace100json": the
# "gateway" variant with tracing on (gateway_trace on) for every request,
# 1% or 100% of the traces sampled, exported over OTLP/HTTP in protobuf or
# JSON.  The spans go to the first backend (an nginx that answers 200 to
# any POST), a process of its own: the collector's work is not measured,
# the gateway's encoding and sending are.  "gateway" itself is tracing off
# (the module loaded, no gateway_trace).
#
#   BENCH_RESULTS=/tmp/trace BENCH_CG_RUNS=3 \
#   BENCH_CG_VARIANTS="gateway gateway_trace1 gateway_trace100 gateway_trace100json" \
#   bench/run callgrind
#   BENCH_RESULTS=/tmp/trace-tp BENCH_ROUNDS=6 BENCH_DURATION=3 \
#   BENCH_VARIANTS="gateway gateway_trace100" bench/run throughput
#
# then /tmp/trace/callgrind.{csv,meta} go to bench/results/callgrind_trace.*,
# /tmp/trace/callgrind_functions_gateway_trace{1,100}.csv to bench/results/,
# /tmp/trace-tp/throughput.{csv,meta} to bench/results/throughput_trace.*,
# and bench/lib/report.pl writes the tracing section of performance.md.
# GATEWAY_MODULE=another/build/ngx_http_gateway_module.so measures another
# build of the module the same way (the "before" column of docs/tracing.md).
VARIANT_DESC[gateway_trace1]="ngx_gateway, tracing on, 1% sampled, OTLP protobuf"
VARIANT_DESC[gateway_trace100]="ngx_gateway, tracing on, 100% sampled, OTLP protobuf"
VARIANT_DESC[gateway_trace100json]="ngx_gateway, tracing on, 100% sampled, OTLP JSON"

# gateway_trace_http SAMPLE PROTOCOL: the http-level tracing directives
gateway_trace_http() {
    echo "gateway_trace_exporter endpoint=http://127.0.0.1:${BACKEND_PORTS[0]}/v1/traces protocol=$2;" \
         "gateway_trace on; gateway_trace_sample $1;"
}

variant_gateway_trace1_start() {
    GW_HTTP_EXTRA=$(gateway_trace_http 1% protobuf) gateway_variant_start "$1" "$2" ""
}

variant_gateway_trace100_start() {
    GW_HTTP_EXTRA=$(gateway_trace_http 100% protobuf) gateway_variant_start "$1" "$2" ""
}

variant_gateway_trace100json_start() {
    GW_HTTP_EXTRA=$(gateway_trace_http 100% json) gateway_variant_start "$1" "$2" ""
}
