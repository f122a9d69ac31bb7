package fetch

import (
	"log/slog"
	"os"
)

// WarnExposedSecret logs a warning when the secret file at path may be
// read by every user of the machine (any process sharing the node, or the
// volume, could then take it). It does not refuse the file: Kubernetes
// mounts Secrets 0644 unless the volume sets defaultMode. flag names the
// option the path came from; the content is never read here.
func WarnExposedSecret(log *slog.Logger, flag, path string) {
	if log == nil || path == "" {
		return
	}
	fi, err := os.Stat(path) // follows the symlinks of a Secret volume
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o004 == 0 {
		return
	}
	log.Warn("secret file is readable by every user: restrict it (chmod 0600 or 0640; on Kubernetes, defaultMode: 0440 on the Secret volume)",
		"flag", flag, "path", path, "mode", fi.Mode().Perm().String())
}
