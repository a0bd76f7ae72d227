package schema

import "testing"

// Every migration has its own version, numbered without gaps from 1.
func TestMigrationVersionsAreUnique(t *testing.T) {
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range ms {
		if m.Version != i+1 {
			t.Fatalf("migration %s has version %d, want %d", m.Name, m.Version, i+1)
		}
	}
}
