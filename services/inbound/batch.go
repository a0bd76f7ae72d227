package inbound

import (
	"context"
	"sync"
	"time"
)

// batches collects the reports being recorded into batches: a worker takes
// the first waiting request, then the ones that arrive within the window,
// up to the batch size, and records them together (processBatch). Several
// workers record batches at the same time.
type batches struct {
	size   int
	window time.Duration

	mu      sync.RWMutex
	running bool
	reqs    chan *request
	wg      sync.WaitGroup
}

func newBatches(size int, window time.Duration) *batches {
	return &batches{size: size, window: window}
}

// start runs workers that record batches with process, each batch with a
// context of base bounded by timeout.
func (b *batches) start(base context.Context, workers int, timeout time.Duration, process func(context.Context, []*request)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reqs = make(chan *request, b.size*workers)
	b.running = true
	for range workers {
		b.wg.Go(func() {
			for first := range b.reqs {
				batch := b.collect(first)
				ctx, cancel := context.WithTimeout(base, timeout)
				process(ctx, batch)
				cancel()
			}
		})
	}
}

// collect is first and what arrives within the window, up to the size.
func (b *batches) collect(first *request) []*request {
	batch := []*request{first}
	timer := time.NewTimer(b.window)
	defer timer.Stop()
	for len(batch) < b.size {
		select {
		case r, ok := <-b.reqs:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// submit queues r for a batch; false when the workers do not run.
func (b *batches) submit(ctx context.Context, r *request) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.running {
		return false
	}
	select {
	case b.reqs <- r:
	case <-ctx.Done():
		r.finish(OutcomeError, ctx.Err())
	}
	return true
}

// stop lets the workers record what is queued, and waits for them; later
// submits are refused.
func (b *batches) stop() {
	b.mu.Lock()
	if b.running {
		b.running = false
		close(b.reqs)
	}
	b.mu.Unlock()
	b.wg.Wait()
}
