package bench

import (
	"math"
	"path/filepath"
	"testing"
)

// TestFloor: the floors of the schemes from movement costs, worked by
// hand for 4 nodes (doc/performance.md): with write 1, pread 0.6, TCP 1.2
// and XOR 0.1 per byte, XOR = 1 + 0.6 + 1.2 + 0.1*2/3 + 1/3; RS with two
// failures sends 2B (chunks of B/2: C(1 + 2 + 1)) and writes B of parity;
// a rebuild reads 4B, moves 4B, XORs 8B/3 and writes 4B/3.
func TestFloor(t *testing.T) {
	m := Movements{Write: 10, Pread: 6, TCP: 12, XOR: 1}
	for _, tc := range []struct {
		scheme      string
		nodes, fail int
		want        float64
	}{
		{Single, 4, 0, 1},
		{XOR, 4, 0, 1 + 0.6 + 1.2 + 0.1*2/3.0 + 1/3.0},
		{XOR, 2, 0, 1 + 0.6 + 1.2 + 0 + 1},
		{RS, 4, 2, 1 + 0.6 + 1.2*2 + 0.1*2 + 1},
		{RS, 4, 1, 1 + 0.6 + 1.2 + 0.1 + 1/3.0}, // k=1 is XOR's traffic
		{RS, 3, 2, 1 + 0.6 + 1.2*3 + 0.1*2 + 2}, // the head makes the parities: 2C + C
		{Rebuild, 4, 0, 4*0.6 + 4*1.2 + 0.1*8/3.0 + 1 + 1/3.0},
	} {
		got, err := m.Floor(tc.scheme, tc.nodes, tc.fail, 0)
		if err != nil || math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Floor(%s, %d nodes, %d failures) = %v, %v; want %v", tc.scheme, tc.nodes, tc.fail, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		scheme      string
		nodes, fail int
	}{{XOR, 1, 0}, {RS, 4, 0}, {RS, 4, 4}, {Rebuild, 1, 0}, {"PARTNER", 4, 0}} {
		if _, err := m.Floor(tc.scheme, tc.nodes, tc.fail, 0); err == nil {
			t.Errorf("Floor(%s, %d, %d): no error", tc.scheme, tc.nodes, tc.fail)
		}
	}
	if _, err := (Movements{}).Floor(XOR, 4, 0, 0); err == nil {
		t.Error("a floor without a measured write")
	}
	// The ranks' own plain write values the writes: at 20 instead of 10
	// per 64 MiB, XOR's other movements weigh half as much.
	got, _ := m.Floor(XOR, 4, 0, 20)
	if want := 1 + 1/3.0 + (6+12+2/3.0)/20; math.Abs(got-want) > 1e-9 {
		t.Errorf("XOR floor against a plain write of 20: %v, want %v", got, want)
	}
}

// TestMeasureMovements: every movement is measured, in the directory
// given, which is left as it was.
func TestMeasureMovements(t *testing.T) {
	dir := t.TempDir()
	m, err := MeasureMovements(dir, 4<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.Write <= 0 || m.Pread <= 0 || m.TCP <= 0 || m.XOR <= 0 {
		t.Fatalf("a movement not measured: %+v", m)
	}
	if f, err := m.Floor(XOR, 4, 0, 0); err != nil || f <= 1 {
		t.Fatalf("XOR floor %v, %v", f, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
}
