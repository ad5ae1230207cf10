# bench/soak.gp — RSS and open descriptors of rampart over a soak run.
#   gnuplot -e "csv='build/soak/samples.csv'; out='docs/soak.png'" bench/soak.gp
# samples.csv: t_s,phase,rss_kb,fds,client_connections (phase: plain | asan)
set terminal pngcairo size 1000,500 font ",10"
set output out
set datafile separator ","
set key top left
set xlabel "time (min)"
set ylabel "RSS (MiB)"
set y2label "open descriptors"
set ytics nomirror
set y2tics
set grid
set title "rampart soak: RSS and descriptors (plain build, then ASan build)"
plot csv using ($1/60):(strcol(2) eq "plain" ? $3/1024 : 1/0) every ::1 with lines lw 2 title "RSS, plain", \
     csv using ($1/60):(strcol(2) eq "asan" ? $3/1024 : 1/0) every ::1 with lines lw 2 title "RSS, ASan", \
     csv using ($1/60):(strcol(2) eq "plain" ? $4 : 1/0) every ::1 axes x1y2 with lines dt 2 title "fds, plain", \
     csv using ($1/60):(strcol(2) eq "asan" ? $4 : 1/0) every ::1 axes x1y2 with lines dt 2 title "fds, asan"
