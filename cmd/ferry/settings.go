package main

import (
	"flag"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ferrysync/ferry/api"
	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/git"
	fhttp "github.com/ferrysync/ferry/fetch/http"
	"github.com/ferrysync/ferry/fetch/kit"
	"github.com/ferrysync/ferry/fetch/s3"
	"github.com/ferrysync/ferry/internal/report"
	"github.com/ferrysync/ferry/signal"
	"github.com/ferrysync/ferry/sync"
	"github.com/ferrysync/ferry/validate"
)

// setting is one thing a user can configure. This table is the only place
// that knows the command line's vocabulary: each row gives the flag (and
// so its FERRY_* variable and its key in a --config file: the flag's name
// without the dashes), its help text and default, and the field it fills
// as the packages below cmd name it in their errors ("git.PasswordFile").
// Those packages take plain Options structs and never see a flag.
//
// A row is per source unless marked global(): a --config file may then set
// it for each source, which inherits flags, environment and the file's top
// level otherwise. A row is used by 'run' and 'once' unless marked in():
// a command's help lists, and its command line accepts, only its rows;
// 'check' accepts them all. Rows that tell the app (signal.*) are run's.
type setting struct {
	flag     string
	field    string // "" for what only cmd reads
	declare  func(fs *flag.FlagSet, name string)
	secret   *string // the path, for a file that holds a secret
	isGlobal bool
	cmds     []string // nil: by the field's scope (commandsOf)
}

// The commands that take settings.
const (
	cmdRun   = "run"
	cmdOnce  = "once"
	cmdCheck = "check"
)

// global marks a setting that has one value for the whole process: a
// source in a --config file cannot set it.
func (s setting) global() setting { s.isGlobal = true; return s }

// in names the commands that use s.
func (s setting) in(cmds ...string) setting { s.cmds = cmds; return s }

// usedBy reports whether cmd uses s. 'check' checks what 'run' and 'once'
// would, so it takes every setting. 'once' tells the app nothing (its app
// has not started: README, Telling the application), so the rows of the
// signal package are run's alone unless they say otherwise.
func (s setting) usedBy(cmd string) bool {
	if cmd == cmdCheck {
		return true
	}
	cmds := s.cmds
	if cmds == nil {
		cmds = []string{cmdRun, cmdOnce}
		if strings.HasPrefix(s.field, "signal.") {
			cmds = []string{cmdRun}
		}
	}
	return slices.Contains(cmds, cmd)
}

// settings lists every setting, bound to o.
func settings(o *options) []setting {
	return []setting{
		row("config", "", str(&o.config, "", "YAML `file` of settings and of sources, each with its own settings (see the README); read once at start: a change needs a restart")).global(),
		row("source", "", list(&o.sources, "`[NAME=]URL` of a source; repeat for several (env: one per line)")).global(),
		row("root", "", str(&o.root, "", "directory shared with the app; each source is published as ROOT/NAME (required)")).global(),
		row("link", "", str(&o.link, defaultLink, "link `name` for a single source given without NAME=")).global(),
		row("period", "", dur(&o.period, sync.DefaultPeriod, "poll interval, jittered by +-10%")).global().in(cmdRun),
		row("keep", "", num(&o.keep, sync.DefaultKeep, "published revisions retained per source, the current one included")).global(),
		row("timeout", "", dur(&o.timeout, sync.DefaultTimeout, "bound on one fetch and publish")).global(),
		row("once-timeout", "", dur(&o.onceTimeout, sync.DefaultOnceTimeout, "how long 'once' retries a failing source before exiting 1")).global().in(cmdOnce),
		row("max-failures", "", num(&o.maxFailures, 0, "'run' exits 1 after this many consecutive failures of one source (0: never)")).global().in(cmdRun),
		row("max-staleness", "", dur(&o.maxStaleness, 0, "/readyz fails when a source has not synced for this long (0: stay ready through outages)")).global().in(cmdRun),
		row("publish-mode", "sync.PublishMode", str(&o.publishMode, string(sync.PublishSymlink), "how ROOT/NAME shows the current revision: symlink (a link renamed over the last) or exchange (a real directory, swapped with renameat2 RENAME_EXCHANGE, for consumers that cannot follow a symlink)")),
		row("settle", "", dur(&o.settle, sync.DefaultSettle, "how long a new revision waits for the other sources polled with it, still syncing, so that the app is told of changes together, once")).global().in(cmdRun),
		row("generation-link", "", str(&o.genLink, "", "link `name` in ROOT to one consistent view of every source: ROOT/NAME/SOURCE for each, swapped at once when sources change together (not with --publish-mode exchange)")).global(),
		row("verify-period", "", dur(&o.verifyPeriod, sync.DefaultVerifyPeriod, "how often the published tree is read back and compared with what was published; a difference is repaired (0: never)")).global().in(cmdRun),
		row("ignore", "sync.Ignore", list(&o.ignore, "`pattern` in .gitignore syntax of entries never published, whatever the source (e.g. '*.md', 'tests/', '!keep.md'); repeat or separate with commas (env: one per line); a new revision that changes only ignored entries publishes nothing")),
		row("max-bytes", "", size(&o.limits.MaxBytes, fetch.DefaultMaxBytes, "`size` limit of one revision, all files together (suffixes K, M, G, Ki, Mi, Gi)")),
		row("max-files", "", num(&o.limits.MaxFiles, fetch.DefaultMaxFiles, "limit on the files of one revision")),
		row("max-file-size", "", size(&o.limits.MaxFileSize, fetch.DefaultMaxFileSize, "limit on the `size` of one file")),
		row("http-addr", "", str(&o.httpAddr, api.DefaultAddr, "`address` for /healthz, /readyz, /metrics, /status, POST /sync, the pull API (/v1/) and the status page (/) (empty: off)")).global().in(cmdRun),
		secret("sync-token-file", "api.TokenFile", str(&o.syncTokenFile, "", "`file` holding the bearer token that POST /sync needs from a non-loopback address or a web page of another origin"), &o.syncTokenFile).global().in(cmdRun),
		secret("api-token-file", "api.APITokenFile", str(&o.apiTokenFile, "", "`file` holding the bearer token GET /status and the pull API (/v1/) need from a non-loopback address, when the port is exposed beyond the pod; re-read on every request (unset: open like the probes)"), &o.apiTokenFile).global().in(cmdRun),
		row("notify-url", "signal.URLs", list((*listFlag)(&o.notify.URLs), "app reload `URL` told about each new revision; repeat for several")),
		row("notify-method", "signal.Method", str(&o.notify.Method, signal.DefaultMethod, "HTTP method for --notify-url")),
		row("notify-timeout", "signal.Timeout", dur(&o.notify.Timeout, signal.DefaultNotifyTimeout, "timeout of one notify request")),
		row("notify-max-elapsed", "signal.MaxElapsed", dur(&o.notify.MaxElapsed, signal.DefaultMaxElapsed, "how long one change is retried while the app refuses it (0: until a newer revision or shutdown)")),
		row("notify-signal", "signal.Signal", str(&o.notify.Signal, "", "`signal` (e.g. HUP) to send to --notify-process on each new revision")),
		row("notify-process", "signal.Name", str(&o.notify.Name, "", "`name` of the process to signal (needs shareProcessNamespace: true in a pod)")),
		row("exec-command", "signal.ExecCommand", str(&o.notify.ExecCommand, "", "`command` run after each new revision, in ROOT/NAME, with FERRY_SOURCE, FERRY_REVISION, FERRY_PREVIOUS_REVISION, FERRY_PATH and FERRY_CHANGES (the notify body) set; sources told together run it once, in ROOT, each variable listing them comma-separated; split like a shell would, run without one; retried like --notify-url while it exits non-zero")),
		row("exec-timeout", "signal.ExecTimeout", dur(&o.notify.ExecTimeout, signal.DefaultExecTimeout, "bound on one run of --exec-command; its process group is killed then")),
		row("touch-file", "signal.TouchFile", str(&o.notify.TouchFile, "", "absolute `path` of a file whose modification time is set after each publish, the first one too (created 0644 when missing; its directory must exist; a symlink there is refused)")),
		row("rollback-on-reject", "sync.RollbackOnReject", boolean(&o.rollout.RollbackOnReject, "when the app refuses a new revision (a --notify-url answers 4xx other than 408 and 429, or it or --exec-command still fails after --reject-after), put the previous one back, tell the app, and hold the refused one back until the origin moves on (needs --keep of at least 2)")).in(cmdRun),
		row("reject-after", "signal.RejectAfter", dur(&o.notify.RejectAfter, signal.DefaultRejectAfter, "with --rollback-on-reject, a notify or exec hook still failing after this long of retries counts as the app refusing the revision (0: only a 4xx reply does)")),
		row("rollout-window", "sync.Window", dur(&o.rollout.Window, 0, "spread each new revision over a fleet: adopt it after a delay in [0, window) drawn from a hash of --instance-id, the source and the revision, unless the origin moves on first (0: at once; 'once' and a first publish never wait)")).global().in(cmdRun),
		row("instance-id", "sync.InstanceID", str(&o.rollout.InstanceID, "", "this instance's `name` in the fleet, for --rollout-window (default: the host name, which is the pod's name in Kubernetes)")).global().in(cmdRun),
		row("validate", "validate.Checks", str(&o.checks.Checks, "", "`checks` a new revision must pass before it is published: syntax (every .json, .yaml, .yml and .toml file parses)")),
		row("validate-schema", "validate.Schemas", list((*listFlag)(&o.checks.Schemas), "`GLOB=FILE`: files of a revision matching GLOB (relative to its tree; ** for any depth) must validate against the JSON Schema in FILE, read at start; repeat for several")),
		row("validate-command", "validate.Command", str(&o.checks.Command, "", "`command` that must exit 0 before a revision is published; split like a shell would, run without one, in the staged tree, with FERRY_STAGED_DIR, FERRY_SOURCE and FERRY_REVISION set")),
		row("validate-timeout", "validate.Timeout", dur(&o.checks.Timeout, validate.DefaultTimeout, "bound on one run of --validate-command; its process group is killed then and the revision rejected")),
		row("log-format", "", str(&o.logFormat, "json", "log format: json or text")).global(),
		row("log-level", "", str(&o.logLevel, "info", "log level: debug, info, warn or error")).global(),

		row("git-username", "git.Username", str(&o.git.Username, "", "`user` name for git over HTTP(S) basic auth; a user in the URL wins (default: \"git\" when only a password is given)")),
		secret("git-password-file", "git.PasswordFile", str(&o.git.PasswordFile, "", "`file` holding the password or access token for git over HTTP(S); re-read on every sync"), &o.git.PasswordFile),
		secret("git-ssh-key-file", "git.SSHKeyFile", str(&o.git.SSHKeyFile, "", "`file` holding the private key (unencrypted, OpenSSH or PEM) for git over SSH; re-read on every sync"), &o.git.SSHKeyFile),
		row("git-known-hosts-file", "git.KnownHostsFile", str(&o.git.KnownHostsFile, "", "known_hosts `file` for git over SSH: an unknown or changed host key is refused (required for SSH)")),
		row("git-verify-keys-file", "git.VerifyKeysFile", str(&o.git.VerifyKeysFile, "", "`file` of public keys (ASCII-armored OpenPGP, SSH authorized_keys or allowed_signers lines): only commits signed by one are published (?verify=head|tag|tag-and-head); re-read every sync")),
		row("git-github-app-id", "git.GitHubAppID", num(&o.git.GitHubAppID, 0, "GitHub App `ID`: git over HTTPS authenticates as the app's installation (with --git-github-app-installation-id and --git-github-app-private-key-file)")),
		row("git-github-app-installation-id", "git.GitHubAppInstallationID", num(&o.git.GitHubAppInstallationID, 0, "`ID` of the GitHub App's installation whose access tokens ferry mints")),
		secret("git-github-app-private-key-file", "git.GitHubAppPrivateKeyFile", str(&o.git.GitHubAppPrivateKeyFile, "", "`file` holding the GitHub App's private key (PEM); re-read for each token, which is cached until 5 minutes before it expires"), &o.git.GitHubAppPrivateKeyFile),
		row("git-github-api-url", "git.GitHubAPIURL", str(&o.git.GitHubAPIURL, git.DefaultGitHubAPIURL, "GitHub API `URL` installation tokens are asked from (GitHub Enterprise Server: https://HOST/api/v3)")),
		row("git-ssh-insecure-ignore-host-key", "git.InsecureIgnoreHostKey", boolean(&o.git.InsecureIgnoreHostKey, "accept any SSH host key, ignoring --git-known-hosts-file (man-in-the-middle risk; logs a warning on every sync)")),

		secret("http-bearer-token-file", "http.BearerTokenFile", str(&o.http.BearerTokenFile, "", "`file` holding a token sent as Authorization: Bearer to HTTP(S) sources; re-read every sync"), &o.http.BearerTokenFile),
		secret("http-header-file", "http.HeaderFile", str(&o.http.HeaderFile, "", "`file` of extra request headers for HTTP(S) sources, one 'Name: value' a line (# comments); re-read every sync"), &o.http.HeaderFile),
		row("http-username", "http.Username", str(&o.http.Username, "", "`user` for HTTP basic auth (with --http-password-file)")),
		secret("http-password-file", "http.PasswordFile", str(&o.http.PasswordFile, "", "`file` holding the HTTP basic auth password; re-read every sync"), &o.http.PasswordFile),
		row("http-ca-file", "http.CAFile", str(&o.http.CAFile, "", "PEM `file` of CA certificates trusted for HTTPS sources, in addition to the system roots")),
		row("http-insecure-skip-verify", "http.InsecureSkipVerify", boolean(&o.http.InsecureSkipVerify, "do not verify HTTPS certificates (logs a warning on every sync)")),
		row("http-verify-keys-file", "http.VerifyKeysFile", str(&o.http.VerifyKeysFile, "", "`file` of public keys (ASCII-armored OpenPGP, SSH): every HTTP(S) source then needs ?signature=URL of a detached signature of its body, verified before publishing; re-read every sync")),
		row("http-max-body", "http.MaxBodyBytes", size(&o.http.MaxBodyBytes, fhttp.DefaultMaxBodyBytes, "limit on the `size` of an HTTP(S) body, and of what an archive expands to; larger fails the sync")),

		row("s3-endpoint", "s3.Endpoint", str(&o.s3.Endpoint, "", "`URL` (http(s)://HOST[:PORT]) of an S3-compatible service for s3://BUCKET sources; path style")),
		row("s3-region", "s3.Region", str(&o.s3.Region, "", "S3 `region` when the source URL names none (default: the AWS SDK's, then us-east-1)")),
		row("s3-path-style", "s3.PathStyle", boolean(&o.s3.PathStyle, "address S3 buckets in the path, not the host name (always on for custom endpoints)")),
		secret("s3-access-key-file", "s3.AccessKeyFile", str(&o.s3.AccessKeyFile, "", "`file` holding the S3 access key ID; re-read every sync (default: the AWS SDK's credential chain)"), &o.s3.AccessKeyFile),
		secret("s3-secret-key-file", "s3.SecretKeyFile", str(&o.s3.SecretKeyFile, "", "`file` holding the S3 secret access key; re-read every sync"), &o.s3.SecretKeyFile),
		secret("s3-session-token-file", "s3.SessionTokenFile", str(&o.s3.SessionTokenFile, "", "`file` holding an S3 session token for temporary keys; re-read every sync"), &o.s3.SessionTokenFile),
		row("s3-anonymous", "s3.Anonymous", boolean(&o.s3.Anonymous, "send unsigned S3 requests (public buckets)")),
		row("s3-no-imds", "s3.NoIMDS", boolean(&o.s3.NoIMDS, "never ask the EC2 instance metadata service for S3 credentials (it costs seconds outside EC2)")),
		row("s3-concurrency", "s3.Concurrency", num(&o.s3.Concurrency, s3.DefaultConcurrency, "S3 objects downloaded in parallel")),
		secret("oci-docker-config", "oci.DockerConfigFile", str(&o.oci.DockerConfigFile, "", "Docker config.json `file` (a kubernetes.io/dockerconfigjson Secret) whose entry for the registry authenticates OCI sources; re-read every sync (default: anonymous)"), &o.oci.DockerConfigFile),
		row("oci-username", "oci.Username", str(&o.oci.Username, "", "`user` for OCI registry basic auth (with --oci-password-file)")),
		secret("oci-password-file", "oci.PasswordFile", str(&o.oci.PasswordFile, "", "`file` holding the OCI registry password or access token; re-read every sync"), &o.oci.PasswordFile),
		secret("oci-bearer-token-file", "oci.BearerTokenFile", str(&o.oci.BearerTokenFile, "", "`file` holding a registry token sent as Authorization: Bearer to OCI registries; re-read every sync"), &o.oci.BearerTokenFile),
		row("oci-ca-file", "oci.CAFile", str(&o.oci.CAFile, "", "PEM `file` of CA certificates trusted for OCI registries, in addition to the system roots")),
		row("oci-insecure-skip-verify", "oci.InsecureSkipVerify", boolean(&o.oci.InsecureSkipVerify, "do not verify OCI registries' certificates (logs a warning on every sync)")),

		row("allow-empty", "s3.AllowEmpty", boolean(&o.s3.AllowEmpty, "publish an empty S3 prefix instead of failing (publishing nothing over real config is rarely meant)")),
	}
}

func row(flag, field string, declare func(*flag.FlagSet, string)) setting {
	return setting{flag: flag, field: field, declare: declare}
}

// secret is a row for a file that holds a secret, at *path.
func secret(flag, field string, declare func(*flag.FlagSet, string), path *string) setting {
	return setting{flag: flag, field: field, declare: declare, secret: path}
}

// The declare helpers bind a setting to its field, with flag's own value
// types, so that --help prints each kind as flag always has.

func str(p *string, def, usage string) func(*flag.FlagSet, string) {
	return func(fs *flag.FlagSet, name string) { fs.StringVar(p, name, def, usage) }
}

func boolean(p *bool, usage string) func(*flag.FlagSet, string) {
	return func(fs *flag.FlagSet, name string) { fs.BoolVar(p, name, false, usage) }
}

func dur(p *time.Duration, def time.Duration, usage string) func(*flag.FlagSet, string) {
	return func(fs *flag.FlagSet, name string) { fs.DurationVar(p, name, def, usage) }
}

func num(p *int, def int, usage string) func(*flag.FlagSet, string) {
	return func(fs *flag.FlagSet, name string) { fs.IntVar(p, name, def, usage) }
}

func size(p *int64, def int64, usage string) func(*flag.FlagSet, string) {
	return func(fs *flag.FlagSet, name string) {
		*p = def
		fs.Var((*sizeFlag)(p), name, usage)
	}
}

func list(p *listFlag, usage string) func(*flag.FlagSet, string) {
	return func(fs *flag.FlagSet, name string) { fs.Var(p, name, usage) }
}

// warnExposedSecrets warns about every secret file of o that every user
// of the machine may read, for the settings of the scopes in use ("git",
// "api"): here, where each can be named by its flag or key. A file warned
// about is added to warned and not warned about again.
func warnExposedSecrets(o *options, inUse map[string]bool, key func(string) string, warned map[string]bool, log *slog.Logger) {
	for _, s := range settings(o) {
		scope, _, _ := strings.Cut(s.field, ".")
		if s.secret != nil && *s.secret != "" && inUse[scope] && !warned[*s.secret] {
			warned[*s.secret] = true
			kit.WarnExposed(log, *s.secret, "flag", key(s.flag))
		}
	}
}

// flagOf returns how the user names a field of a package's Options, by
// key: its flag ("--git-password-file" for "git.PasswordFile" with
// flagName), or its key in a --config file (keyName). A field no setting
// fills keeps its Go name.
func flagOf(o *options, field string, key func(string) string) string {
	for _, s := range settings(o) {
		if s.field == field {
			return key(s.flag)
		}
	}
	return field
}

// describe returns err in the user's vocabulary: the fields of scope's
// Options (scope "git", "http", "s3", "signal", "api") that err names
// become their flags or keys, by key.
func describe(o *options, scope string, err error, key func(string) string) string {
	return report.RenderFields(err, func(field string) string {
		if strings.Contains(field, ".") {
			return flagOf(o, field, key)
		}
		return flagOf(o, scope+"."+field, key)
	})
}
