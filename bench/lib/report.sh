# write_report: docs/performance.md from bench/results (lib/report.pl)
write_report() {
    mkdir -p "$REPO/docs"
    perl "$BENCH_DIR/lib/report.pl" "$RESULTS" "$REPO/docs/performance.md"
}
