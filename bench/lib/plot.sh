# gnuplot helpers (sourced by bench/run).  Small PNGs (800x450) meant to be
# committed next to the CSVs they are drawn from.

GNUPLOT=${GNUPLOT:-gnuplot}
PLOT_TERM=${PLOT_TERM:-'pngcairo size 800,450 font ",10"'}

# plot_latency CSV PNG TITLE
#   CSV: variant,percentile,latency_us (header line).  Draws latency vs
#   percentile on the usual "1/(1-p)" log axis, one line per variant.
plot_latency() {
    local csv=$1 png=$2 title=$3 dat v i=0 plots=""
    command -v "$GNUPLOT" >/dev/null || { log "no gnuplot, skipping $png"; return 0; }
    dat=$BENCH_TMP/plot-$RANDOM
    mkdir -p "$dat"
    for v in $(awk -F, 'NR > 1 { print $1 }' "$csv" | awk '!s[$0]++'); do
        awk -F, -v v="$v" 'NR > 1 && $1 == v && $2 < 100 {
            printf "%.6f %.3f\n", 1 / (1 - $2 / 100), $3 / 1000 }' "$csv" > "$dat/$v.dat"
        plots+="${plots:+, }'$dat/$v.dat' using 1:2 with linespoints title '$v'"
        i=$((i + 1))
    done
    "$GNUPLOT" <<EOF || log "gnuplot failed for $png"
set terminal $PLOT_TERM
set output '$png'
set title "$title"
set logscale x
set xtics ("0%%" 1, "50%%" 2, "90%%" 10, "99%%" 100, "99.9%%" 1000, "99.99%%" 10000)
set xlabel "percentile"
set ylabel "latency (ms)"
set grid
set key top left
plot $plots
EOF
}

# plot_histogram PNG TITLE XLABEL BINWIDTH XMAX "file:title" ...
#   each file: one number a line; values above XMAX are counted in the last
#   bin (XMAX = "" for no cap).
plot_histogram() {
    local png=$1 title=$2 xlabel=$3 bw=$4 xmax=$5 plots="" spec
    shift 5
    command -v "$GNUPLOT" >/dev/null || { log "no gnuplot, skipping $png"; return 0; }
    for spec in "$@"; do
        plots+="${plots:+, }'${spec%%:*}' using (bin(cap(\$1))):(1.0) smooth frequency with boxes title '${spec#*:}'"
    done
    "$GNUPLOT" <<EOF || log "gnuplot failed for $png"
set terminal $PLOT_TERM
set output '$png'
set title "$title"
set xlabel "$xlabel"
set ylabel "count"
set grid
set key top right
set style fill transparent solid 0.5 border -1
bw = $bw
xmax = "$xmax"
cap(x) = (xmax ne "" && x > xmax + 0) ? xmax + 0 : x
bin(x) = bw * floor(x / bw) + bw / 2.0
set boxwidth bw
plot $plots
EOF
}

# plot_series DAT PNG TITLE XLABEL YLABEL "col:title" ...
#   DAT: whitespace separated columns, x in column 1.
plot_series() {
    local dat=$1 png=$2 title=$3 xl=$4 yl=$5 plots="" spec
    shift 5
    command -v "$GNUPLOT" >/dev/null || { log "no gnuplot, skipping $png"; return 0; }
    for spec in "$@"; do
        plots+="${plots:+, }'$dat' using 1:${spec%:*} with lines lw 2 title '${spec#*:}'"
    done
    "$GNUPLOT" <<EOF || log "gnuplot failed for $png"
set terminal $PLOT_TERM
set output '$png'
set title "$title"
set xlabel "$xl"
set ylabel "$yl"
set grid
set autoscale xfix
set yrange [0:*]
set offsets 0, 0, graph 0.3, 0
set key top left horizontal maxrows 2
plot $plots
EOF
}
