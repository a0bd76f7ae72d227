// Package natsembed runs a NATS server with JetStream inside the current process,
// for `make run` and for tests, so neither needs a NATS installation.
package natsembed

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures the embedded server.
type Config struct {
	// Host and Port to listen on; Port -1 picks a free port.
	Host string
	Port int
	// StoreDir is where JetStream keeps its data.
	StoreDir string
	// SyncAlways makes JetStream fsync every write before acknowledging it, so an
	// acknowledged publish survives a power loss (slower). When false, data is
	// flushed every SyncInterval (JetStream's default is 2 minutes); a process
	// crash loses nothing either way, only an OS crash or power loss can.
	SyncAlways   bool
	SyncInterval time.Duration
	// MaxPayload bounds one message; it must exceed the largest accepted email.
	MaxPayload int32
	ServerName string
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 4222
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = 16 << 20
	}
	if c.ServerName == "" {
		c.ServerName = "emailsender-embedded"
	}
	return c
}

// Start starts the server and waits until it accepts connections.
func Start(cfg Config) (*server.Server, error) {
	cfg = cfg.WithDefaults()
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("natsembed: StoreDir is required")
	}
	opts := &server.Options{
		ServerName:   cfg.ServerName,
		Host:         cfg.Host,
		Port:         cfg.Port,
		JetStream:    true,
		StoreDir:     cfg.StoreDir,
		SyncAlways:   cfg.SyncAlways,
		SyncInterval: cfg.SyncInterval,
		MaxPayload:   cfg.MaxPayload,
		NoSigs:       true,
		NoLog:        true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: new server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natsembed: server on %s:%d not ready", cfg.Host, cfg.Port)
	}
	return s, nil
}
