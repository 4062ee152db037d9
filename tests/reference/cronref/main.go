// cronref prints the fire instants robfig/cron/v3 (the parser Kubernetes' CronJob controller uses)
// computes, for the wfclock parity test. Test tooling only.
//
// Input, one case per line on stdin: "<cron>\t<zone>\t<start unix seconds>\t<count>".
// Output, one line per case: the next <count> fires as Unix seconds, space separated.
// Zone data is read from WFCLOCK_TZDATA_DIR (the pinned Python tzdata package), so both sides use
// identical data.
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

func main() {
	dir := os.Getenv("WFCLOCK_TZDATA_DIR")
	zones := map[string]*time.Location{}
	parser := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		parts := strings.Split(in.Text(), "\t")
		if len(parts) != 4 {
			fmt.Fprintln(os.Stderr, "bad line:", in.Text())
			os.Exit(2)
		}
		loc, ok := zones[parts[1]]
		if !ok {
			data, err := os.ReadFile(filepath.Join(dir, parts[1]))
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			if loc, err = time.LoadLocationFromTZData(parts[1], data); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(2)
			}
			zones[parts[1]] = loc
		}
		sched, err := parser.Parse(parts[0])
		if err != nil {
			fmt.Fprintln(out, "error:", err)
			continue
		}
		spec := sched.(*cron.SpecSchedule)
		spec.Location = loc
		start, _ := strconv.ParseInt(parts[2], 10, 64)
		count, _ := strconv.Atoi(parts[3])
		t := time.Unix(start, 0).UTC()
		fires := make([]string, 0, count)
		for i := 0; i < count; i++ {
			t = spec.Next(t)
			if t.IsZero() {
				break
			}
			fires = append(fires, strconv.FormatInt(t.Unix(), 10))
		}
		fmt.Fprintln(out, strings.Join(fires, " "))
	}
}
