# bench/overload.gp — plot for bench/overload.sh.
# Variables set by the caller: outdir (holds overload-<setup>.dat and
# plot-vars.gp, written by bench/overload_report.py: capacity (req/s), slo
# (s), target_ms (2x the unloaded p99 TTFT), nsetups, setups[], titles[]),
# outfile.  x is the measured offered load (Poisson arrivals deviate from
# the nominal multiple).
# Data columns: 1 nominal load (x capacity), 2 measured offered / capacity,
# 3 goodput / capacity, 4-5 admitted TTFT p50/p99 (ms), 6 refusal p99 (ms).
load outdir."/plot-vars.gp"
set terminal pngcairo size 1200,520 font "sans,11"
set output outfile
set multiplot layout 1,2 title sprintf("Overload: llmsim at capacity %.1f req/s, open-loop Poisson load", capacity)
set grid
set logscale x
set xrange [0.3:14]
set xtics ("0.5" 0.5, "1" 1, "2" 2, "5" 5, "10" 10)
set xlabel "offered load (x capacity)"
set key bottom left box opaque

array colors[4] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
array points[4] = [7, 5, 9, 11]

set ylabel "goodput / capacity"
set yrange [0:1.15]
set title sprintf("goodput (2xx, TTFT <= %g s) as a fraction of capacity", slo)
plot for [i=1:nsetups] sprintf("%s/overload-%s.dat", outdir, setups[i]) using 2:3 \
        with linespoints lw 2 pt points[i] ps 1.2 lc rgb colors[i] title titles[i], \
     (x < 1 ? x : 1) with lines dt 2 lw 1 lc rgb "#888888" title "ideal"

set ylabel "ms (log scale)"
set logscale y
set yrange [10:20000]
set key bottom right box opaque
set title "p99 time to first token of admitted (2xx) requests"
plot for [i=1:nsetups] sprintf("%s/overload-%s.dat", outdir, setups[i]) using 2:5 \
        with linespoints lw 2 pt points[i] ps 1.2 lc rgb colors[i] title titles[i], \
     target_ms with lines dt 2 lw 1 lc rgb "#888888" title sprintf("2x unloaded p99 (%.0f ms)", target_ms), \
     slo * 1000 with lines dt 3 lw 1 lc rgb "#444444" title sprintf("SLO %g s", slo)
unset multiplot
