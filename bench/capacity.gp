# bench/capacity.gp — plot for bench/capacity.sh.
# Variables set by the caller: datafile, outfile, capacity (req/s), slo and
# giveup (seconds), noabort (1 when the --no-abort series was measured),
# slots.  x is the measured offered rate over capacity (Poisson arrivals
# deviate from the nominal multiple).
# Data columns: 1 load, 2 offered, 3 completed 2xx/s, 4 goodput/s,
# 5-6 TTFT p50/p99 of completed, 7 gave-up share, 8-9 the --no-abort
# server's completed/goodput, 10-11 users' TTFT p50/p99 (give-ups censored).
set terminal pngcairo size 1000,900 font "sans,11"
set output outfile
set multiplot layout 2,1 title sprintf("llmsim, no gateway: %d slots, capacity %.1f req/s", slots, capacity)
set key top left box opaque
set grid
set xlabel "offered load (measured arrivals / capacity)"
set xrange [0:*]

set ylabel "requests/s"
set yrange [0:*]
set title sprintf("throughput and goodput (2xx answers with TTFT <= %g s), steady state", slo)
if (noabort) {
    plot datafile using ($2/capacity):2 with linespoints lw 2 pt 7 lc rgb "#888888" title "offered", \
         datafile using ($2/capacity):3 with linespoints lw 2 pt 5 lc rgb "#1f77b4" title "completed 2xx", \
         datafile using ($2/capacity):4 with linespoints lw 3 pt 9 lc rgb "#2ca02c" title "goodput", \
         datafile using ($2/capacity):9 with linespoints lw 2 pt 11 dt 2 lc rgb "#d62728" title "goodput, --no-abort server"
} else {
    plot datafile using ($2/capacity):2 with linespoints lw 2 pt 7 lc rgb "#888888" title "offered", \
         datafile using ($2/capacity):3 with linespoints lw 2 pt 5 lc rgb "#1f77b4" title "completed 2xx", \
         datafile using ($2/capacity):4 with linespoints lw 3 pt 9 lc rgb "#2ca02c" title "goodput"
}

set ylabel "seconds (log scale)"
set logscale y
set yrange [0.01:30]
set title sprintf("time to first token seen by users (a user who gave up counts as %g s)", giveup)
plot datafile using ($2/capacity):10 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "p50", \
     datafile using ($2/capacity):11 with linespoints lw 2 pt 5 lc rgb "#ff7f0e" title "p99", \
     slo with lines dt 2 lw 2 lc rgb "#2ca02c" title sprintf("SLO %g s", slo), \
     giveup with lines dt 3 lw 2 lc rgb "#d62728" title sprintf("give-up %g s", giveup)
unset multiplot
