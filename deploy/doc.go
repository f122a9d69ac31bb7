// Package deploy holds ferry's deployment files — Kubernetes manifests for
// the native-sidecar and one-shot modes, a compose file and a systemd unit —
// and the tests that check them against Kubernetes' own types and play the
// kubelet with them.
package deploy
