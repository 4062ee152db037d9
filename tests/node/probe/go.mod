module wfclock.dev/tests/node/probe

go 1.26

require github.com/lib/pq v1.12.3
