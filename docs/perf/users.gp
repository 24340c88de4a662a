# kdsync's peak RSS and throughput against the number of users (a hire and
# one or two changes each, backlogged), before and after the bounded state
# cache; and its RSS over the run. From docs/perf/users/quiet/users.tsv
# (written by docs/perf/users.py; block 0 "after", block 1 "before"), from
# docs/perf/users/s3/users.tsv (python3 docs/perf/users.py s3: the third
# sitting, only "after") and the
# kdload -rss-out files in docs/perf/users/.
# From the repository root: gnuplot docs/perf/users.gp
set datafile separator "\t"
set terminal pngcairo size 1100,460 font "DejaVu Sans,11" noenhanced
set output "docs/perf/users.png"
set multiplot layout 1,2 title "kdsync against the number of users (kdsync, NATS and the simulator sharing 2 cores; quiet machine)"
set logscale x 10
set xrange [6000:1600000]
set xtics ("10k" 10000, "100k" 100000, "1M" 1000000)
set grid xtics ytics
set key top left box opaque
set xlabel "users (2.2 events each)"
set ylabel "kdsync peak RSS (MiB)"
set yrange [0:*]
set arrow 1 from 6000,64 to 1600000,64 nohead dt 2 lc rgb "#888888"
set label 1 "64 MiB" at 8000,70 tc rgb "#666666"
data = "docs/perf/users/quiet/users.tsv"
s3 = "docs/perf/users/s3/users.tsv"
plot data index 1 using 2:9 with linespoints lw 2 pt 7 title "before (map, flushed at 200,000)", \
     data index 0 using 2:9 with linespoints lw 2 pt 5 title "after (LRU, KDSYNC_STATE_CACHE=4MiB)", \
     s3 index 0 using 2:9 with linespoints lw 2 pt 9 title "third sitting (no demo in the binary)"
unset arrow 1
unset label 1
set ylabel "events/s (median)"
set yrange [0:*]
plot data index 1 using 2:6 with linespoints lw 2 pt 7 title "before", \
     data index 0 using 2:6 with linespoints lw 2 pt 5 title "after", \
     s3 index 0 using 2:6 with linespoints lw 2 pt 9 title "third sitting"
unset multiplot

set terminal pngcairo size 900,460 font "DejaVu Sans,11" noenhanced
set output "docs/perf/users-rss.png"
set title "kdsync's RSS during the run (kdload -rss-out, one sample a second)"
set logscale x 10
set xrange [1000:2400000]
set xtics auto
set format x "%.0s%c"
set xlabel "outcomes so far (events finished; each new user's first event reads its record)"
set ylabel "RSS (MiB)"
set yrange [0:180]
set key top left box opaque
set arrow 1 from 1000,64 to 2400000,64 nohead dt 2 lc rgb "#888888"
plot "docs/perf/users/rss-before-1m.tsv" using 2:3 skip 2 with lines lw 1 lc rgb "#c9a0dc" title "before, 1M users", \
     "docs/perf/users/rss-before-100k.tsv" using 2:3 skip 2 with lines lw 2 lc rgb "#9400d3" title "before, 100k users", \
     "docs/perf/users/rss-after-100k.tsv" using 2:3 skip 2 with lines lw 2 lc rgb "#009e73" title "after, 100k users", \
     "docs/perf/users/rss-after-1m.tsv" using 2:3 skip 2 with lines lw 2 lc rgb "#56b4e9" title "after, 1M users", \
     "docs/perf/users/rss-s3-1m.tsv" using 2:3 skip 2 with lines lw 2 lc rgb "#e69f00" title "third sitting, 1M users"
