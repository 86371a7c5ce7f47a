package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A sample is one measured wrk run against one target, as the harness
// records it: a tab-separated line of body bytes, connections, round,
// target, wrk output file, CPU clock ticks the target's process(es) used
// during the run, and their peak RSS in KiB (VmHWM, reset before the run).
type sample struct {
	body, conns, round int
	target             string
	cpuTicks           int64
	rssKiB             int64
	wrk                wrkResult
}

type wrkResult struct {
	requests int64
	rps      float64
	p50, p99 time.Duration
	errors   int64 // non-2xx/3xx responses plus socket errors
}

var (
	reRequests = regexp.MustCompile(`(?m)^\s*(\d+) requests in `)
	reRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	reP50      = regexp.MustCompile(`(?m)^\s*50%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
	reP99      = regexp.MustCompile(`(?m)^\s*99%\s+([0-9.]+)(us|ms|s|m|h)\s*$`)
	reNon2xx   = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s*(\d+)`)
	reSocket   = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

var wrkUnits = map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour}

// parseWrk reads the output of `wrk --latency`.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := reRequests.FindStringSubmatch(out)
	if m == nil {
		return r, errors.New("no request count in wrk output")
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	if m = reRPS.FindStringSubmatch(out); m == nil {
		return r, errors.New("no Requests/sec in wrk output")
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, p := range []struct {
		re  *regexp.Regexp
		dst *time.Duration
	}{{reP50, &r.p50}, {reP99, &r.p99}} {
		m := p.re.FindStringSubmatch(out)
		if m == nil {
			return r, errors.New("no latency distribution in wrk output (run it with --latency)")
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		*p.dst = time.Duration(v * float64(wrkUnits[m[2]]))
	}
	if m = reNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.errors += n
	}
	if m = reSocket.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
		}
	}
	return r, nil
}

func readSamples(path string) ([]sample, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []sample
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		fs := strings.Split(sc.Text(), "\t")
		if len(fs) != 7 {
			return nil, fmt.Errorf("%s:%d: want 7 tab-separated fields, got %d", path, line, len(fs))
		}
		var s sample
		var errs [6]error
		s.body, errs[0] = strconv.Atoi(fs[0])
		s.conns, errs[1] = strconv.Atoi(fs[1])
		s.round, errs[2] = strconv.Atoi(fs[2])
		s.target = fs[3]
		s.cpuTicks, errs[3] = strconv.ParseInt(fs[5], 10, 64)
		s.rssKiB, errs[4] = strconv.ParseInt(fs[6], 10, 64)
		if err := errors.Join(errs[:]...); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		wrkOut, err := os.ReadFile(fs[4])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if s.wrk, err = parseWrk(string(wrkOut)); err != nil {
			return nil, fmt.Errorf("%s (%s): %w", fs[4], s.target, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// row is one target's medians over the rounds of one (body, conns) run.
type row struct {
	target           string
	rounds           int
	rps, spread      float64 // spread: (max-min)/median of req/s
	p50, p99         float64 // milliseconds
	cpuPerReq        float64 // µs
	peakRSSMiB       float64
	errors           int64
	cpuKnown, rssSet bool
}

func summarize(ss []sample, ticksPerSec float64) row {
	r := row{target: ss[0].target, rounds: len(ss)}
	var rps, p50, p99, cpu []float64
	for _, s := range ss {
		rps = append(rps, s.wrk.rps)
		p50 = append(p50, float64(s.wrk.p50)/float64(time.Millisecond))
		p99 = append(p99, float64(s.wrk.p99)/float64(time.Millisecond))
		if s.cpuTicks >= 0 && s.wrk.requests > 0 {
			cpu = append(cpu, float64(s.cpuTicks)/ticksPerSec*1e6/float64(s.wrk.requests))
		}
		if s.rssKiB >= 0 {
			r.peakRSSMiB = max(r.peakRSSMiB, float64(s.rssKiB)/1024)
			r.rssSet = true
		}
		r.errors += s.wrk.errors
	}
	r.rps, r.p50, r.p99 = median(rps), median(p50), median(p99)
	if r.rps > 0 {
		r.spread = (slices.Max(rps) - slices.Min(rps)) / r.rps
	}
	if len(cpu) > 0 {
		r.cpuPerReq, r.cpuKnown = median(cpu), true
	}
	return r
}

func bodyLabel(n int) string {
	switch {
	case n >= 1024 && n%1024 == 0:
		return fmt.Sprintf("%d KiB", n/1024)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

func ratio(a, b float64, ok bool) string {
	if !ok || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// cmdReport prints one markdown table per (body, conns), in the order the
// runs happened, with targets in the order given.
func cmdReport(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	path := fs.String("samples", "", "samples file written by the harness")
	order := fs.String("targets", "", "comma-separated target order of the table rows")
	ticks := fs.Float64("ticks", 100, "clock ticks per second (getconf CLK_TCK)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ss, err := readSamples(*path)
	if err != nil {
		return err
	}
	type key struct{ body, conns int }
	var keys []key
	groups := map[key]map[string][]sample{}
	var targets []string
	if *order != "" {
		targets = strings.Split(*order, ",")
	}
	for _, s := range ss {
		k := key{s.body, s.conns}
		if groups[k] == nil {
			groups[k] = map[string][]sample{}
			keys = append(keys, k)
		}
		groups[k][s.target] = append(groups[k][s.target], s)
		if !slices.Contains(targets, s.target) {
			targets = append(targets, s.target)
		}
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for _, k := range keys {
		rows := map[string]row{}
		for t, g := range groups[k] {
			rows[t] = summarize(g, *ticks)
		}
		direct, hasDirect := rows["direct"]
		base, hasBase := rows["baseline"]
		ngx, hasNgx := rows["nginx"]
		rounds := 0
		for _, r := range rows {
			rounds = max(rounds, r.rounds)
		}
		what := fmt.Sprintf("median of %d rounds", rounds)
		if rounds == 1 {
			what = "1 round"
		}
		fmt.Fprintf(w, "### %s body, %d connections (%s)\n\n", bodyLabel(k.body), k.conns, what)
		fmt.Fprintln(w, "| target | req/s | spread | p50 ms | p99 ms | CPU µs/req | peak RSS MiB | req/s ÷ direct | req/s ÷ baseline | req/s ÷ nginx | CPU ÷ baseline | CPU ÷ nginx | errors |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, t := range targets {
			r, ok := rows[t]
			if !ok {
				continue
			}
			cpu, rss := "–", "–"
			if r.cpuKnown {
				cpu = fmt.Sprintf("%.1f", r.cpuPerReq)
			}
			if r.rssSet {
				rss = fmt.Sprintf("%.1f", r.peakRSSMiB)
			}
			fmt.Fprintf(w, "| %s | %.0f | %.0f%% | %.2f | %.2f | %s | %s | %s | %s | %s | %s | %s | %d |\n",
				t, r.rps, r.spread*100, r.p50, r.p99, cpu, rss,
				ratio(r.rps, direct.rps, hasDirect), ratio(r.rps, base.rps, hasBase), ratio(r.rps, ngx.rps, hasNgx),
				ratio(r.cpuPerReq, base.cpuPerReq, hasBase && r.cpuKnown && base.cpuKnown),
				ratio(r.cpuPerReq, ngx.cpuPerReq, hasNgx && r.cpuKnown && ngx.cpuKnown),
				r.errors)
		}
		fmt.Fprintln(w)
	}
	return nil
}
