package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// NATSNode is one nats-server process with JetStream (file store), alone or
// one node of a cluster. Stop and Start keep its port and its store.
type NATSNode struct {
	Name        string
	Port        int
	ClusterPort int // 0: not clustered
	dir         string
	proc        *proc
}

// newNATSNodes prepares n nodes under dir: n == 1 is a single server; n > 1 a
// cluster named "chaos" whose nodes route to each other on loopback.
func newNATSNodes(bin, dir string, n int, onEvent func(string, ...any)) ([]*NATSNode, error) {
	nodes := make([]*NATSNode, n)
	for i := range nodes {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		nodes[i] = &NATSNode{Name: fmt.Sprintf("n%d", i+1), Port: port, dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		if n > 1 {
			if nodes[i].ClusterPort, err = freePort(); err != nil {
				return nil, err
			}
		}
	}
	for _, nd := range nodes {
		if err := os.MkdirAll(filepath.Join(nd.dir, "store"), 0o755); err != nil {
			return nil, err
		}
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\nmax_payload: 16777216\n", nd.Name, nd.Port)
		fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n}\n", filepath.Join(nd.dir, "store"))
		if n > 1 {
			var routes []string
			for _, o := range nodes {
				if o != nd {
					routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.ClusterPort))
				}
			}
			fmt.Fprintf(&b, "cluster {\n  name: chaos\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n", nd.ClusterPort, strings.Join(routes, ", "))
		}
		conf := filepath.Join(nd.dir, "nats.conf")
		if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
			return nil, err
		}
		nd.proc = &proc{name: "nats-" + nd.Name, bin: bin, args: []string{"-c", conf}, env: os.Environ(),
			logPath: filepath.Join(nd.dir, "nats.log"), onEvent: onEvent}
	}
	return nodes, nil
}

// URL is the node's client URL.
func (nd *NATSNode) URL() string { return "nats://" + hostPort(nd.Port) }

// Start starts the node and waits until it accepts client connections.
func (nd *NATSNode) Start(ctx context.Context) error {
	if err := nd.proc.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return waitTCP(ctx, hostPort(nd.Port))
}

// Stop stops the node: kill true sends SIGKILL (a crash), else SIGTERM (a
// clean shutdown).
func (nd *NATSNode) Stop(kill bool) error {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	return nd.proc.Signal(sig, 30*time.Second)
}

// Close stops the node for good.
func (nd *NATSNode) Close() { nd.proc.Close() }

// natsURLs joins the nodes' client URLs for NATS_URL.
func natsURLs(nodes []*NATSNode) string {
	urls := make([]string, len(nodes))
	for i, nd := range nodes {
		urls[i] = nd.URL()
	}
	return strings.Join(urls, ",")
}
