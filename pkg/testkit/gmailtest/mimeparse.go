package gmailtest

import (
	"context"
	"crypto/sha256"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/namirasoft/email-sender/pkg/testkit/mimecheck"
)

type parseResult struct {
	msg *mimecheck.Message
	err string // the parser's failure or defects
}

// parser reads raw messages with pkg/mimecheck for every Server of the
// process: equal messages are parsed once, and the messages of servers that
// ask at the same time (parallel tests ending together) share one python3
// process.
var parser = newBatchParser()

type batchParser struct {
	mu      sync.Mutex
	cond    *sync.Cond
	cache   map[[32]byte]parseResult
	queued  map[[32]byte][]byte
	running int // callers parsing a batch
}

// maxParsers bounds the python3 processes running at once.
var maxParsers = min(max(runtime.GOMAXPROCS(0), 2), 4)

func newBatchParser() *batchParser {
	p := &batchParser{cache: map[[32]byte]parseResult{}, queued: map[[32]byte][]byte{}}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// parse returns the result of each raw message, in order.
func (p *batchParser) parse(raws [][]byte) []parseResult {
	sums := make([][32]byte, len(raws))
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, raw := range raws {
		sums[i] = sha256.Sum256(raw)
		if _, done := p.cache[sums[i]]; !done {
			p.queued[sums[i]] = raw
		}
	}
	for {
		out := make([]parseResult, len(raws))
		missing := false
		for i, sum := range sums {
			r, done := p.cache[sum]
			out[i], missing = r, missing || !done
		}
		if !missing {
			return out
		}
		if p.running >= maxParsers || len(p.queued) == 0 {
			p.cond.Wait()
			continue
		}
		// Parse everything queued so far, for every caller.
		batch := p.queued
		p.queued = map[[32]byte][]byte{}
		p.running++
		p.mu.Unlock()
		res := parseBatch(batch)
		p.mu.Lock()
		for sum, r := range res {
			p.cache[sum] = r
		}
		p.running--
		p.cond.Broadcast()
	}
}

// parseBatch runs mimecheck on the messages, in python3 processes of at most
// 256 messages or 32 MiB.
func parseBatch(batch map[[32]byte][]byte) map[[32]byte]parseResult {
	res := make(map[[32]byte]parseResult, len(batch))
	var sums [][32]byte
	var raws [][]byte
	size := 0
	flush := func() {
		if len(raws) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := mimecheck.Parse(ctx, raws...)
		cancel()
		for i, sum := range sums {
			switch {
			case err != nil:
				res[sum] = parseResult{err: err.Error()}
			case out[i].Error != "":
				res[sum] = parseResult{err: "the parser failed: " + out[i].Error}
			case len(out[i].Defects) > 0:
				res[sum] = parseResult{msg: &out[i], err: "the parser found defects: " + strings.Join(out[i].Defects, ", ")}
			default:
				res[sum] = parseResult{msg: &out[i]}
			}
		}
		sums, raws, size = nil, nil, 0
	}
	for sum, raw := range batch {
		if len(raws) == 256 || (len(raws) > 0 && size+len(raw) > 32<<20) {
			flush()
		}
		sums, raws = append(sums, sum), append(raws, raw)
		size += len(raw)
	}
	flush()
	return res
}
