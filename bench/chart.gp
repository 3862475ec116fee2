# bench/chart.gp - the chart of bench/results/chart.dat (written by
# bench/report.lisp): for each benchmark, each system's figure relative to
# workers in copy mode (= 1; share mode on the channel and future rows,
# which only it runs), higher is better, on a log scale.
#   gnuplot -e "datafile='bench/results/chart.dat'; outfile='bench/results/chart.png'" bench/chart.gp
# (subtitle='...' adds to the title: run.sh says so when the sizes were scaled)
if (!exists("datafile")) datafile = 'bench/results/chart.dat'
if (!exists("outfile")) outfile = 'bench/results/chart.png'

set terminal pngcairo size 1400,650 font "sans,11" noenhanced
set output outfile
if (!exists("subtitle")) subtitle = ''
set title "workers vs its peers: performance relative to workers (copy mode; share mode on chan-, future, matrix) = 1, higher is better, log scale" . subtitle
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [0.0001:10000]
set ytics ("1/10000" 0.0001, "1/1000" 0.001, "1/100" 0.01, "1/10" 0.1, "1" 1, "10" 10, "100" 100, "1000" 1000, "10000" 10000)
set grid ytics
set xtics rotate by -30 nomirror
set key outside right top
set arrow from graph 0, first 1 to graph 1, first 1 nohead lc rgb "black" lw 1.5 front
set ylabel "times better than workers-copy (log)"
plot for [col=2:7] datafile using col:xtic(1) title columnheader(col) \
     lc rgb word("#1f5fa8 #5fa8e8 #d95f02 #7570b3 #a6761d #00add8", col-1)
