package rm

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestExecRunner(t *testing.T) {
	run := ExecRunner(5 * time.Second)
	out, err := run(context.Background(), []string{"sh", "-c", "echo out; echo err >&2"})
	if err != nil || string(out) != "out\n" {
		t.Fatalf("ok command: %q %v", out, err)
	}
	_, err = run(context.Background(), []string{"sh", "-c", "echo 'sinfo: error: slurmctld down' >&2; exit 3"})
	var ce *CmdError
	if !errors.As(err, &ce) || ce.ExitCode != 3 || ce.Stderr != "sinfo: error: slurmctld down" {
		t.Fatalf("failing command: %#v", err)
	}
	if !strings.Contains(err.Error(), "slurmctld down") || !strings.Contains(err.Error(), "sh -c") {
		t.Errorf("error %q should name the command and its stderr", err)
	}
	_, err = ExecRunner(100*time.Millisecond)(context.Background(), []string{"sleep", "30"})
	if !errors.As(err, &ce) || ce.ExitCode != -1 || !strings.Contains(err.Error(), "no answer within 100ms") {
		t.Fatalf("hung command: %v", err)
	}
	_, err = run(context.Background(), []string{"/nonexistent/sinfo"})
	if !errors.As(err, &ce) {
		t.Fatalf("missing program: %v", err)
	}
}

func TestHelpers(t *testing.T) {
	if got := Lines([]byte("  a \n\n b\n")); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("Lines = %q", got)
	}
	d := OnlyNodes(map[string]string{"a": "x", "z": "y"}, []string{"a", "b"})
	if !reflect.DeepEqual(d, map[string]string{"a": "x"}) {
		t.Errorf("OnlyNodes = %v", d)
	}
	var nilEnv Env
	if nilEnv.Get("X") != "" || MapEnv(map[string]string{"X": "1"}).Get("X") != "1" {
		t.Errorf("Env.Get")
	}
}
