package providerconfig

import "testing"

func TestCheckHELO(t *testing.T) {
	t.Parallel()
	for h, ok := range map[string]bool{
		"mx.example.com": true, "relay-1.example": true, "[192.0.2.1]": true, "[IPv6:2001:db8::1]": true, "localhost": true,
		"": false, "two words": false, "-x.example": false, "x-.example": false, "a..b": false, "a_b.example": false,
		"[not-an-ip]": false, "[192.0.2.1": false, "a\r\nMAIL FROM:<x>": false,
	} {
		if err := CheckHELO(h); (err == nil) != ok {
			t.Errorf("CheckHELO(%q) = %v, want ok %v", h, err, ok)
		}
	}
}
