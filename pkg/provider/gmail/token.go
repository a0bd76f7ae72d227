package gmail

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// tokenCache is the access token of one configuration: an
// oauth2.ReuseTokenSource over the refresh token, which an API's 401 can
// invalidate.
type tokenCache struct {
	conf  *oauth2.Config
	ctx   context.Context // carries the token endpoint's HTTP client
	early time.Duration

	mu      sync.Mutex
	src     oauth2.TokenSource
	last    *oauth2.Token // the token src last returned
	refresh string        // the refresh token, as last returned by the endpoint
}

func newTokenCache(conf *oauth2.Config, hc *http.Client, refreshToken string, early time.Duration) *tokenCache {
	c := &tokenCache{
		conf:    conf,
		ctx:     context.WithValue(context.Background(), oauth2.HTTPClient, hc),
		early:   early,
		refresh: refreshToken,
	}
	c.src = c.newSource()
	return c
}

// newSource returns a caching source that redeems c.refresh at its first use.
func (c *tokenCache) newSource() oauth2.TokenSource {
	return oauth2.ReuseTokenSourceWithExpiry(nil, c.conf.TokenSource(c.ctx, &oauth2.Token{RefreshToken: c.refresh}), c.early)
}

// Token returns the cached access token, refreshing it when it is missing or
// about to expire (one refresh at a time, shared by concurrent callers).
func (c *tokenCache) Token() (*oauth2.Token, error) {
	c.mu.Lock()
	src := c.src
	c.mu.Unlock()
	t, err := src.Token()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.src == src {
		c.last = t
		if t.RefreshToken != "" {
			c.refresh = t.RefreshToken
		}
	}
	c.mu.Unlock()
	return t, nil
}

// tokenCtx is Token, given up when ctx ends first; the refresh goes on and its
// token is cached for the next caller.
func (c *tokenCache) tokenCtx(ctx context.Context) (*oauth2.Token, error) {
	type result struct {
		t   *oauth2.Token
		err error
	}
	ch := make(chan result, 1)
	go func() {
		t, err := c.Token()
		ch <- result{t, err}
	}()
	select {
	case r := <-ch:
		return r.t, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// invalidate drops accessToken if it is still the cached one: the next Token
// refreshes. A token already replaced is left alone, so many requests refused
// with the same token cause one refresh.
func (c *tokenCache) invalidate(accessToken string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil || c.last.AccessToken != accessToken {
		return false
	}
	c.src = c.newSource()
	c.last = nil
	return true
}

// invalidating is the transport under oauth2.Transport: it sees each request
// with its Authorization header and drops the token of a 401 answer.
type invalidating struct {
	cache *tokenCache
	base  http.RoundTripper
}

func (t *invalidating) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusUnauthorized {
		if at, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
			t.cache.invalidate(at)
		}
	}
	return resp, err
}
