// chan.go - Go's channels, the peer of the channel benchmarks (system
// "go"): the same programs as the chan-* rows of bench/workers.lisp,
// printing the same RESULT lines (see bench/common.lisp).  bench/run.sh
// builds it with Debian's golang-go into build/bench-go/chan:
//
//	build/bench-go/chan chan-ping-pong
//	WK_BENCH_SCALE=0.05 build/bench-go/chan chan-throughput
//
// GOMAXPROCS is Go's default, one per online CPU.
package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"time"
)

// The sizes of bench/common.lisp's *savina-n* for these rows.
var sizes = map[string]int{
	"chan-ping-pong":  200000,  // round trips
	"chan-throughput": 2000000, // values through one buffered channel
}

// capacity is the buffer of chan-throughput, as in the Lisp programs.
const capacity = 128

func scaled(n int) int {
	text := os.Getenv("WK_BENCH_SCALE")
	if text == "" {
		return n
	}
	s, err := strconv.ParseFloat(text, 64)
	if err != nil || s <= 0 {
		fmt.Fprintf(os.Stderr, "bad WK_BENCH_SCALE %q\n", text)
		os.Exit(2)
	}
	return int(math.Max(1, math.Round(float64(n)*s)))
}

func result(bench string, value float64, unit string, n int) {
	fmt.Printf("RESULT %s go %.4f %s %d GOMAXPROCS %d\n",
		bench, value, unit, n, runtime.GOMAXPROCS(0))
}

// pingPong: a value sent on an unbuffered channel to an echoing goroutine
// and back on another, N times.
func pingPong(n int) {
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		for i := 0; i < n; i++ {
			ping <- i
			<-pong
		}
		done <- time.Since(start)
	}()
	elapsed := <-done
	close(ping)
	result("chan-ping-pong", float64(elapsed.Nanoseconds())/float64(n), "ns/round-trip", n)
}

// throughput: one producer sends N values on a buffered channel to one
// consumer, which counts them until the channel is closed.
func throughput(n int) {
	ch := make(chan int, capacity)
	count := make(chan int)
	start := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			ch <- i
		}
		close(ch)
	}()
	go func() {
		k := 0
		for range ch {
			k++
		}
		count <- k
	}()
	if got := <-count; got != n {
		fmt.Fprintf(os.Stderr, "chan-throughput: %d values arrived, not %d\n", got, n)
		os.Exit(1)
	}
	elapsed := time.Since(start)
	result("chan-throughput", float64(n)/elapsed.Seconds()/1e6, "Mmsg/s", n)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: chan chan-ping-pong|chan-throughput")
		os.Exit(2)
	}
	bench := os.Args[1]
	n, ok := sizes[bench]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown benchmark %s; known: chan-ping-pong chan-throughput\n", bench)
		os.Exit(1)
	}
	switch bench {
	case "chan-ping-pong":
		pingPong(scaled(n))
	case "chan-throughput":
		throughput(scaled(n))
	}
}
