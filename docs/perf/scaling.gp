# Backlog throughput against kdsync's concurrency, one line per simulator
# latency, from the medians in docs/perf/scaling.median.tsv (one block per
# latency). From the repository root: gnuplot docs/perf/scaling.gp
set terminal pngcairo size 900,560 font "DejaVu Sans,11" noenhanced
set output "docs/perf/scaling.png"
set title "kdsync backlog throughput (kdsync, NATS and the simulator sharing 2 cores)"
set xlabel "KDSYNC_CONCURRENCY"
set ylabel "events/s (median; bars: min-max)"
set logscale x 2
set logscale y 10
set xrange [0.7:370]
set yrange [5:20000]
set xtics (1, 16, 64, 256)
set grid xtics ytics
set key top left box opaque
set datafile separator "\t"
set arrow from 0.7,7500 to 370,7500 nohead dt 2 lc rgb "#888888"
set label "target at latency 0: 7,500/s" at 1.0,9500 tc rgb "#666666"
plot for [i=0:3] "docs/perf/scaling.median.tsv" index i using 2:3:4:5 with yerrorlines lw 2 \
     title sprintf("simulator latency %s ms", word("0 5 20 100", i+1))
