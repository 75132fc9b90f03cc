// Command sync is Go's side of the chronos sync comparison (see ../README.md):
// channel ping-pong, buffered-channel throughput, and a sync.Mutex
// uncontended and contended. Standard library only.
//
//	sync --workload pingpong|buffered|mutex_uncontended|mutex_contended [--threads N] [--n N]
//
// --threads sets GOMAXPROCS; the garbage collector keeps its defaults. Each
// workload runs once untimed with n/10, then once timed with n; the time is
// taken with time.Now (monotonic) around the timed phase only. A wrong value
// exits 1.
//
// Prints one line on stdout:
//
//	RESULT workload=W peer=go threads=N n=N ns_per_op=X
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "sync (go): "+format+"\n", args...)
	os.Exit(1)
}

func usage(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "sync (go): "+format+"\n", args...)
	flag.Usage()
	os.Exit(2)
}

// pingpong: two goroutines, two unbuffered channels. The main goroutine sends
// i on ping; the other receives it and sends i+1 back on pong. The echo
// goroutine is started before the clock. Returns time / round trip.
func pingpong(n int) time.Duration {
	ping := make(chan int)
	pong := make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		if got := <-pong; got != i+1 {
			fail("pingpong: round trip %d: got %d, want %d", i, got, i+1)
		}
	}
	elapsed := time.Since(t0)
	close(ping)
	if _, ok := <-pong; ok {
		fail("pingpong: pong not closed after ping was")
	}
	return elapsed
}

// buffered: the main goroutine sends 0..n-1 into make(chan int, 1024); one
// consumer goroutine, started before the clock, sums them until the channel
// is closed. The timed phase ends when the consumer has handed back the sum.
func buffered(n int) time.Duration {
	ch := make(chan int, 1024)
	result := make(chan int)
	go func() {
		s := 0
		for v := range ch {
			s += v
		}
		result <- s
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		ch <- i
	}
	close(ch)
	sum := <-result
	elapsed := time.Since(t0)
	if want := n * (n - 1) / 2; sum != want {
		fail("buffered: sum %d, want %d", sum, want)
	}
	return elapsed
}

// mutexUncontended: one goroutine, n x (Lock; counter++; Unlock).
func mutexUncontended(n int) time.Duration {
	var mu sync.Mutex
	counter := 0
	t0 := time.Now()
	for i := 0; i < n; i++ {
		mu.Lock()
		counter++
		mu.Unlock()
	}
	elapsed := time.Since(t0)
	if counter != n {
		fail("mutex_uncontended: counter %d, want %d", counter, n)
	}
	return elapsed
}

// mutexContended: four goroutines each do n/4 x (Lock; counter++; Unlock),
// no yields. The timed phase includes starting and waiting for the four.
func mutexContended(n int) time.Duration {
	const tasks = 4
	per := n / tasks
	var mu sync.Mutex
	var wg sync.WaitGroup
	counter := 0
	t0 := time.Now()
	wg.Add(tasks)
	for t := 0; t < tasks; t++ {
		go func() {
			for i := 0; i < per; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if counter != per*tasks {
		fail("mutex_contended: counter %d, want %d", counter, per*tasks)
	}
	return elapsed
}

func main() {
	workload := flag.String("workload", "", "pingpong, buffered, mutex_uncontended or mutex_contended")
	threads := flag.Int("threads", 1, "GOMAXPROCS")
	n := flag.Int("n", 0, "operations (0: the workload's reference size)")
	flag.Parse()
	if flag.NArg() != 0 {
		usage("unexpected argument %q", flag.Arg(0))
	}
	if *threads < 1 || *n < 0 {
		usage("--threads must be at least 1 and --n not negative")
	}
	var run func(int) time.Duration
	defN := 0
	switch *workload {
	case "pingpong":
		run, defN = pingpong, 1_000_000
	case "buffered":
		run, defN = buffered, 5_000_000
	case "mutex_uncontended":
		run, defN = mutexUncontended, 20_000_000
	case "mutex_contended":
		run, defN = mutexContended, 4_000_000
	default:
		usage("--workload must be pingpong, buffered, mutex_uncontended or mutex_contended, got %q", *workload)
	}
	if *n == 0 {
		*n = defN
	}
	runtime.GOMAXPROCS(*threads)
	run(*n/10 + 1) // warm-up
	elapsed := run(*n)
	fmt.Printf("RESULT workload=%s peer=go threads=%d n=%d ns_per_op=%.2f\n",
		*workload, runtime.GOMAXPROCS(0), *n, float64(elapsed.Nanoseconds())/float64(*n))
}
