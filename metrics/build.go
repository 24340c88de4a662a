package metrics

import "runtime/debug"

// ReadBuildInfo returns the running binary's BuildInfo: version (set at
// link time; empty: the main module's, "dev" for a development build),
// and the VCS revision and toolchain as the Go runtime recorded them
// ("unknown" when it did not).
func ReadBuildInfo(version string) BuildInfo {
	b := BuildInfo{Version: version, Revision: "unknown", GoVersion: "unknown"}
	if bi, ok := debug.ReadBuildInfo(); ok {
		b.GoVersion = bi.GoVersion
		if b.Version == "" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				b.Revision = s.Value
			}
		}
	}
	if b.Version == "" || b.Version == "(devel)" {
		b.Version = "dev"
	}
	return b
}
