package jobrun_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/scr-go/scr/internal/cache"
	"github.com/scr-go/scr/internal/jobrun"
	"github.com/scr-go/scr/internal/prefix"
)

// newXORCluster: n nodes, one rank each, one XOR set over all of them.
func newXORCluster(t testing.TB, n int, extra map[string]string) *cluster {
	base := t.TempDir()
	c := &cluster{base: base, prefix: filepath.Join(base, "prefix"),
		extra: map[string]string{"SCR_COPY_TYPE": "XOR", "SCR_SET_SIZE": "8"}}
	for k, v := range extra {
		c.extra[k] = v
	}
	for i := 1; i <= n; i++ {
		c.nodes = append(c.nodes, fmt.Sprint("n", i))
	}
	if err := os.MkdirAll(c.prefix, 0o700); err != nil {
		t.Fatal(err)
	}
	return c
}

func without(nodes []string, gone ...string) []string {
	var out []string
	for _, n := range nodes {
		if !strings.Contains(" "+strings.Join(gone, " ")+" ", " "+n+" ") {
			out = append(out, n)
		}
	}
	return out
}

// checkPrefixFiles compares every rank's file of checkpoint step with what
// the rank wrote.
func checkPrefixFiles(t *testing.T, c *cluster, step int) {
	t.Helper()
	for r := range c.nodes {
		b, err := os.ReadFile(filepath.Join(c.prefix, fmt.Sprintf("ckpt.%d/rank_%d", step, r)))
		if err != nil || !bytes.Equal(b, data(r, step)) {
			t.Fatalf("rank %d file of ckpt.%d in the prefix: %v (%d bytes, want %d)", r, step, err, len(b), len(data(r, step)))
		}
	}
}

func scavengeEvent(t *testing.T, c *cluster, name string) prefix.Event {
	t.Helper()
	evs, err := prefix.ReadTimeline(c.prefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Event == "scavenge" && ev.Fields["name"] == name {
			return ev
		}
	}
	t.Fatalf("no scavenge event for %s in %+v", name, evs)
	return prefix.Event{}
}

func rebuiltField(ev prefix.Event) []int {
	var out []int
	l, _ := ev.Fields["rebuilt"].([]any)
	for _, x := range l {
		f, _ := x.(float64)
		out = append(out, int(f))
	}
	return out
}

func lostRanks(t *testing.T, c *cluster, id int64) []int {
	t.Helper()
	s, err := prefix.ReadSummary(c.prefix, id)
	if err != nil {
		t.Fatal(err)
	}
	var lost []int
	for p := range s.Parts() {
		part, err := prefix.ReadRank2FilePart(c.prefix, s, p)
		if err != nil {
			t.Fatal(err)
		}
		lost = append(lost, part.Lost...)
	}
	return lost
}

// TestScavengeRebuildsALostNodeFromXOR: one node of an XOR set is gone after
// the run; scr_postrun's scavenge copies the others' files and redundancy
// data and rebuilds the lost rank's file in the prefix, byte for byte; the
// checkpoint is complete and current.
func TestScavengeRebuildsALostNodeFromXOR(t *testing.T) {
	c := newXORCluster(t, 4, nil)
	c.checkpoint(t, 1)
	if err := os.RemoveAll(filepath.Join(c.base, "n2")); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: without(c.nodes, "n2"), Copier: c.copier(), Log: &log})
	if err != nil {
		t.Fatalf("scavenge: %v\n%s", err, log.String())
	}
	if res.Current != "ckpt.1" || !reflect.DeepEqual(res.Rebuilt[1], []int{1}) {
		t.Fatalf("result %+v\n%s", res, log.String())
	}
	checkPrefixFiles(t, c, 1)
	idx, err := prefix.ReadIndex(c.prefix)
	if err != nil {
		t.Fatal(err)
	}
	if e := idx.ByName("ckpt.1"); e == nil || !e.Valid() || idx.Current != "ckpt.1" {
		t.Fatalf("index %+v", idx)
	}
	if got := rebuiltField(scavengeEvent(t, c, "ckpt.1")); !reflect.DeepEqual(got, []int{1}) {
		t.Fatalf("timeline rebuilt = %v", got)
	}
	if l := lostRanks(t, c, 1); len(l) != 0 {
		t.Fatalf("rank2file still marks %v lost", l)
	}
	chk, err := prefix.CheckDataset(context.Background(), c.prefix, 1)
	if err != nil || !chk.Complete() || chk.Files != 4 {
		t.Fatalf("check %+v %v", chk, err)
	}
	if _, err := os.Stat(filepath.Join(prefix.DatasetDir(c.prefix, 1), "rebuild")); !os.IsNotExist(err) {
		t.Fatalf("the rebuild view was left behind: %v", err)
	}
	if !strings.Contains(log.String(), "ranks 1 rebuilt from redundancy data") {
		t.Fatalf("log:\n%s", log.String())
	}
}

// TestScavengeTooManyLostKeepsThePreviousCheckpoint: two nodes of one XOR
// set are gone; the newest checkpoint cannot be rebuilt: it is recorded
// incomplete with those ranks lost, the error names them and the set, and
// the older checkpoint (flushed during the run) stays current.
func TestScavengeTooManyLostKeepsThePreviousCheckpoint(t *testing.T) {
	c := newXORCluster(t, 4, map[string]string{"SCR_FLUSH": "1"})
	c.checkpoint(t, 2) // flushed
	c.extra["SCR_FLUSH"] = "0"
	c.checkpointRange(t, 3, 3) // only in cache
	for _, n := range []string{"n2", "n3"} {
		if err := os.RemoveAll(filepath.Join(c.base, n)); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	res, err := jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: without(c.nodes, "n2", "n3"), Copier: c.copier(), Log: &log})
	if err != nil {
		t.Fatalf("scavenge: %v\n%s", err, log.String())
	}
	if res.Current != "ckpt.2" || len(res.Scavenged) != 0 {
		t.Fatalf("result %+v\n%s", res, log.String())
	}
	msg := res.Failed[3]
	for _, want := range []string{"ranks 1,2", "set 0 lost", "rank 1", "rank 2", "XOR"} {
		if !strings.Contains(msg, want) {
			t.Fatalf("failure of ckpt.3 does not say %q: %s", want, msg)
		}
	}
	idx, err := prefix.ReadIndex(c.prefix)
	if err != nil {
		t.Fatal(err)
	}
	if e := idx.Get(3); e == nil || e.Valid() || idx.Current != "ckpt.2" {
		t.Fatalf("index: ckpt.3 %+v, current %q", e, idx.Current)
	}
	if l := lostRanks(t, c, 3); !reflect.DeepEqual(l, []int{1, 2}) {
		t.Fatalf("rank2file lost = %v", l)
	}
	if chk, err := prefix.CheckDataset(context.Background(), c.prefix, 3); err != nil || chk.Complete() {
		t.Fatalf("check of ckpt.3: %+v %v", chk, err)
	}
	checkPrefixFiles(t, c, 2)
}

// TestScavengeRebuildsACorruptCachedFile: every node is there, but one
// rank's cached file was damaged after its CRC was recorded; scavenge
// refuses to copy it, counts the rank lost and rebuilds it from the others.
func TestScavengeRebuildsACorruptCachedFile(t *testing.T) {
	c := newXORCluster(t, 3, map[string]string{"SCR_CRC_ON_COPY": "1"})
	c.checkpoint(t, 1)
	bad := corruptCachedFile(t, c, "n3", 2, 1)
	res, err := jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: c.nodes, Copier: c.copier()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Current != "ckpt.1" || !reflect.DeepEqual(res.Rebuilt[1], []int{2}) || !strings.Contains(res.NodeErrors["n3"], "crc32c") {
		t.Fatalf("result %+v (damaged %s)", res, bad)
	}
	checkPrefixFiles(t, c, 1)
	if got := rebuiltField(scavengeEvent(t, c, "ckpt.1")); !reflect.DeepEqual(got, []int{2}) {
		t.Fatalf("timeline rebuilt = %v", got)
	}
}

// corruptCachedFile flips one byte of rank's file of dataset id in node's
// cache, keeping its size, and returns its path.
func corruptCachedFile(t *testing.T, c *cluster, node string, rank int, id int) string {
	t.Helper()
	l := cache.NewLayout(cache.Lookup(c.env(node)))
	ix, err := cache.ReadIndex(l.IndexPath())
	if err != nil {
		t.Fatal(err)
	}
	dir := cache.RankDir(ix.Datasets[id].Path, rank)
	fm, err := cache.ReadFilemap(dir)
	if err != nil || len(fm.Files) == 0 || fm.Files[0].CRC == nil {
		t.Fatalf("filemap of rank %d: %+v %v (a CRC must be recorded)", rank, fm, err)
	}
	p := filepath.Join(dir, fm.Files[0].Rel)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestScavengeRebuildsPerScheme: what each scheme tolerates, scavenged:
// RS (k=2) with two nodes of its set gone, PARTNER with two non-neighbours.
func TestScavengeRebuildsPerScheme(t *testing.T) {
	for _, tc := range []struct {
		scheme string
		nodes  int
		gone   []string
		want   []int
	}{
		{"RS", 5, []string{"n2", "n4"}, []int{1, 3}},
		{"PARTNER", 4, []string{"n1", "n3"}, []int{0, 2}},
		{"XOR", 2, []string{"n2"}, []int{1}},
	} {
		t.Run(tc.scheme, func(t *testing.T) {
			c := newXORCluster(t, tc.nodes, map[string]string{"SCR_COPY_TYPE": tc.scheme, "SCR_SET_FAILURES": "2"})
			c.checkpoint(t, 1)
			for _, n := range tc.gone {
				if err := os.RemoveAll(filepath.Join(c.base, n)); err != nil {
					t.Fatal(err)
				}
			}
			res, err := jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: without(c.nodes, tc.gone...), Copier: c.copier()})
			if err != nil {
				t.Fatal(err)
			}
			if res.Current != "ckpt.1" || !reflect.DeepEqual(res.Rebuilt[1], tc.want) {
				t.Fatalf("result %+v", res)
			}
			checkPrefixFiles(t, c, 1)
		})
	}
}

// BenchmarkScavengeRebuild: 8 ranks (one per node) of 16 MiB each in one
// XOR set, in tmpfs; all nodes there (copy only), or one node gone (the
// scavenge copies the 7 others and rebuilds the lost rank in the prefix).
// b.SetBytes = the dataset's size.
func BenchmarkScavengeRebuild(b *testing.B) {
	for _, lose := range []bool{false, true} {
		b.Run(fmt.Sprintf("lost=%v", lose), func(b *testing.B) { benchScavenge(b, lose) })
	}
}

func benchScavenge(b *testing.B, lose bool) {
	const ranks, size = 8, 16 << 20
	root, err := os.MkdirTemp("/dev/shm", "scr-bench-")
	if err != nil {
		b.Skip("no /dev/shm: ", err)
	}
	defer os.RemoveAll(root)
	b.SetBytes(ranks * size)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := filepath.Join(root, fmt.Sprint(i))
		c := &cluster{base: dir, prefix: filepath.Join(dir, "prefix"),
			extra: map[string]string{"SCR_COPY_TYPE": "XOR", "SCR_SET_SIZE": "8", "SCR_CRC_ON_COPY": "1"},
			payload: func(r, step int) []byte {
				out := make([]byte, size)
				for j := range out {
					out[j] = byte(j*31 + r*7 + step)
				}
				return out
			}}
		for n := 1; n <= ranks; n++ {
			c.nodes = append(c.nodes, fmt.Sprint("n", n))
		}
		if err := os.MkdirAll(c.prefix, 0o700); err != nil {
			b.Fatal(err)
		}
		c.checkpoint(b, 1)
		nodes, want := c.nodes, []int(nil)
		if lose {
			if err := os.RemoveAll(filepath.Join(dir, "n5")); err != nil {
				b.Fatal(err)
			}
			nodes, want = without(c.nodes, "n5"), []int{4}
		}
		b.StartTimer()
		res, err := jobrun.Scavenge(context.Background(), jobrun.ScavengeOptions{Prefix: c.prefix, Nodes: nodes, Copier: c.copier()})
		if err != nil || res.Current != "ckpt.1" || !reflect.DeepEqual(res.Rebuilt[1], want) {
			b.Fatalf("%+v %v", res, err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}
