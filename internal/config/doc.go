// Package config resolves scr-go's SCR_* parameters with SCR's precedence:
//
//	environment > user file > API values > system file > defaults
//
// The user file is SCR_CONF_FILE, else <prefix>/.scrconf; API values are
// those set with Config.Set (SCR_Config) and, for commands, the copy the
// library saved in <prefix>/.scr/app.conf; the system file is
// SCR_CONFIG_FILE, else /etc/scr/scr.conf.
//
// The library resolves a rank's settings in one call (then rank 0 calls
// cfg.SaveApp at Init):
//
//	cfg, s, err := config.Resolve(config.Options{Env: lookup, NoAppFile: true}, opts.Config)
//
// Step by step:
//
//	cfg, err := config.Load(config.Options{Env: lookup})
//	...
//	cfg.Set("SCR_FLUSH=1")              // API values, before Init
//	s, err := cfg.Settings()            // typed, validated; one message per mistake
//	d, err := config.Select(s.Redundancy, true, false, ckptID)
//	d, note := config.Adjust(d, s.Stores, config.Topology{Ranks: n, Nodes: m})
//
// The environment is read through an injectable Lookup, so ranks running as
// goroutines in one process can each see their own. A Config is used by one
// goroutine at a time. Every error names the parameter and where its value
// came from (environment, file and line, Config call, default). The file
// syntax and every parameter are described in doc/config.md.
package config
