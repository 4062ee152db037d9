// The node test's container (tests/cluster/test_node.py): reports what the pod sees to Postgres on
// the host and exits 0, or prints why not and exits 1.
//
// It writes one row to node_probe: its pod name and label (downward API), a token (from a Secret,
// as an environment variable and as a file of a Secret volume), its uid, the error of a write to
// its root file system, and the address the server saw it from.
package main

import (
	"database/sql"
	"fmt"
	"os"

	_ "github.com/lib/pq"
)

func main() {
	if err := probe(); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
}

func probe() error {
	rootWrite := "written"
	if err := os.WriteFile("/probe-was-here", []byte("x"), 0o600); err != nil {
		rootWrite = err.Error()
	}
	tokenFile, err := os.ReadFile("/etc/probe/token")
	if err != nil {
		return err
	}
	db, err := sql.Open("postgres", os.Getenv("DATABASE_URL"))
	if err != nil {
		return err
	}
	defer db.Close()
	var client string
	err = db.QueryRow(
		`INSERT INTO node_probe (pod, label, token, token_file, uid, root_write, client)
		 VALUES ($1, $2, $3, $4, $5, $6, host(inet_client_addr())) RETURNING client`,
		os.Getenv("POD_NAME"), os.Getenv("POD_LABEL"), os.Getenv("TOKEN"), string(tokenFile),
		os.Getuid(), rootWrite,
	).Scan(&client)
	if err != nil {
		return err
	}
	fmt.Printf("probe: reported to Postgres from %s as uid %d\n", client, os.Getuid())
	return nil
}
