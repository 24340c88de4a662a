# Backlog throughput against kdsync's concurrency, one line per simulator
# latency, from the medians kdload -sweep writes to
# docs/perf/scaling.median.tsv (one block per latency, gnuplot's "index";
# columns: latencyMs concurrency events users eventsPerSec min max ...).
# From the repository root: gnuplot docs/perf/scaling.gp
set datafile separator "\t"
set datafile commentschars "#"
# The latency of each block, read before the log scales (stats honours them).
data = "docs/perf/scaling.median.tsv"
stats data using 1 nooutput
blocks = STATS_blocks
array lat[blocks]
do for [i=0:blocks-1] {
    stats data index i using 1 nooutput
    lat[i+1] = STATS_min
}
set terminal pngcairo size 900,560 font "DejaVu Sans,11" noenhanced
set output "docs/perf/scaling.png"
set title "kdsync backlog throughput (kdsync, NATS and the simulator sharing 2 cores)"
set xlabel "KDSYNC_CONCURRENCY"
set ylabel "events/s (median of 3 runs; bars: min-max)"
set logscale x 2
set logscale y 10
set xrange [0.7:370]
set yrange [5:20000]
set xtics (1, 16, 64, 256)
set grid xtics ytics
set key bottom right box opaque
set arrow from 0.7,7500 to 370,7500 nohead dt 2 lc rgb "#888888"
set label "target at latency 0: 7,500/s" at 1.0,9500 tc rgb "#666666"
plot for [i=0:blocks-1] data index i using 2:5:6:7 with yerrorlines lw 2 pt 7 \
     title sprintf("simulator latency %g ms", lat[i+1])
