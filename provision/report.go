package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
)

// SyncReport runs Sync for kdsync sync and writes what happens to w: each
// step as it happens and the verdict, or with asJSON the Result as JSON
// (also when the sync failed, beside the error).
func SyncReport(ctx context.Context, w io.Writer, o Options, user string, asJSON bool) error {
	if !asJSON {
		o.Steps = func(s Step) {
			mark := ""
			if s.Failed {
				mark = "FAILED: "
			}
			fmt.Fprintf(w, "%s: %s%s\n", s.Name, mark, s.Detail)
		}
	}
	res, err := Sync(ctx, o, user)
	if asJSON && res != nil {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if perr := enc.Encode(res); err == nil {
			err = perr
		}
	}
	switch {
	case err != nil || asJSON:
		return err
	case res.DryRun && !res.InSync:
		fmt.Fprintln(w, "dry run: KooDrive differs; run without -dry-run to repair")
	default:
		fmt.Fprintf(w, "%s is in sync\n", user)
	}
	return nil
}
