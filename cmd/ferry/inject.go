package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/s3"
)

// cmdInject adds ferry to Kubernetes workloads. Its own flags say where
// and how; they are not settings of the daemon (no FERRY_* variable, no
// key in a --config file), so they are declared here, not in the table.
const cmdInject = "inject"

// Inject's modes, defaults, and the names it gives what it adds.
const (
	modeSidecar        = "sidecar"
	modeInit           = "init"
	defaultMountPath   = "/config"
	defaultKubeVersion = "1.31"
	defaultImage       = "ghcr.io/ferrysync/ferry:latest"
	// sidecarMinor is the first Kubernetes 1.x with native sidecars on by
	// default (restartPolicy: Always in initContainers): 1.29.
	sidecarMinor = 29
	// ferryName names the container, its port and the shared volume.
	ferryName = "ferry"
)

// injectOptions are inject's own flags.
type injectOptions struct {
	file, mountPath, mode, kubeVersion, image string
	containers                                listFlag
}

func (o *injectOptions) declare(fs *flag.FlagSet) {
	fs.StringVar(&o.file, "f", "-", "`file` of Kubernetes YAML to read (-: standard input)")
	fs.StringVar(&o.mountPath, "mount-path", defaultMountPath, "absolute `path` at which the app containers see the shared volume, read-only")
	fs.Var(&o.containers, "container", "`name` of an app container that gets the volume; repeat for several (default: every container); a pod with none of them is left alone")
	fs.StringVar(&o.mode, "mode", modeSidecar, "`sidecar|init`: a native sidecar running 'ferry run', or a classic init container running 'ferry once'")
	fs.StringVar(&o.kubeVersion, "kube-version", defaultKubeVersion, "Kubernetes `version` of the cluster; sidecar mode needs 1.29 or later")
	fs.StringVar(&o.image, "image", defaultImage, "ferry's container `image`; an injected container keeps its own unless this is given")
}

// injection is what to add to each pod spec.
type injection struct {
	sidecar    bool
	image      string
	imageGiven bool
	args       []string        // ferry's: the command, then --flag=value
	port       int             // of the endpoints; sidecar mode only
	root       string          // where ferry mounts the volume
	mountPath  string          // where the app containers do
	containers []string        // nil: every app container
	found      map[string]bool // the app containers seen, for --container
}

// runInject is 'ferry inject': Kubernetes YAML from -f or stdin, the same
// with ferry added on stdout. Every problem is reported before anything is
// written, and exits 2.
func runInject(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	in, err := parseInject(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		printErrors(stderr, err)
		return exitUsage
	}
	var data []byte
	if in.file == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(in.file)
	}
	if err != nil {
		printErrors(stderr, fmt.Errorf("-f: %w", err))
		return exitUsage
	}
	out, err := in.inject(data)
	if err != nil {
		printErrors(stderr, err)
		return exitUsage
	}
	if _, err := stdout.Write(out); err != nil {
		printErrors(stderr, err)
		return exitFailed
	}
	return exitOK
}

// injectRun is an injection and the file it reads.
type injectRun struct {
	*injection
	file string
}

// parseInject reads inject's flags and run's (or once's, in init mode),
// checks them as that command would, and turns them back into ferry's
// arguments. The environment is not read: the manifest is for a pod, not
// for the shell that runs inject.
func parseInject(args []string, help io.Writer) (*injectRun, error) {
	var opts injectOptions
	fs := flagSet(&options{}, cmdCheck, io.Discard)
	opts.declare(fs)
	fs.Usage = func() {}
	fs.VisitAll(func(f *flag.Flag) { f.Value = &spelled{Value: f.Value} })
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			injectUsage(help)
			return nil, err
		}
		msg := unknownFlag.ReplaceAllString(err.Error(), "unknown flag --$1")
		if m := badValue.FindStringSubmatch(msg); m != nil {
			msg = fmt.Sprintf("--%s: %q does not parse (want a value like %q)", m[2], m[1], fs.Lookup(m[2]).DefValue)
		}
		return nil, fmt.Errorf("%s (see 'ferry inject --help')", strings.ReplaceAll(msg, "for flag -", "for flag --"))
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q (the YAML comes from -f or standard input)", fs.Arg(0)))
	}
	in := &injection{sidecar: opts.mode == modeSidecar, image: opts.image, mountPath: opts.mountPath, containers: opts.containers}
	cmd := cmdRun
	switch opts.mode {
	case modeSidecar:
		if err := checkKubeVersion(opts.kubeVersion); err != nil {
			errs = append(errs, err)
		}
	case modeInit:
		cmd = cmdOnce
	default:
		errs = append(errs, fmt.Errorf("--mode %q: want sidecar or init", opts.mode))
	}
	if !strings.HasPrefix(opts.mountPath, "/") {
		errs = append(errs, fmt.Errorf("--mount-path %q: want an absolute path", opts.mountPath))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	in.imageGiven = given["image"]

	if given["config"] && !given["root"] {
		// The file's root is in the pod; inject cannot read it to mount
		// the volume there, and a --root of its own would conflict.
		errs = append(errs, errors.New("--config needs --root too: where ferry mounts the volume, the file's root if it sets one"))
	}
	// ferry's arguments: the settings given, in the table's order, each
	// value as its flag takes it back. Secrets are paths of files.
	used := flagSet(&options{}, cmd, io.Discard)
	in.args = []string{cmd}
	for _, s := range settings(&options{}) {
		if s.flag == "root" && !given["root"] {
			in.args = append(in.args, "--root="+opts.mountPath)
			continue
		}
		if !given[s.flag] {
			continue
		}
		if used.Lookup(s.flag) == nil {
			errs = append(errs, fmt.Errorf("--%s is not used by 'ferry %s' (--mode %s)", s.flag, cmd, opts.mode))
			continue
		}
		for _, v := range fs.Lookup(s.flag).Value.(*spelled).given {
			in.args = append(in.args, "--"+s.flag+"="+v)
		}
	}
	in.root = fs.Lookup("root").Value.String()
	if !given["root"] {
		in.root = opts.mountPath
	}
	// The same checks as the command's own, on the same arguments; a
	// --config file is a path in the pod, which inject cannot read.
	if !given["config"] {
		c, err := parse(cmd, in.args[1:], func(string) (string, bool) { return "", false }, io.Discard)
		if err != nil {
			errs = append(errs, err)
		} else {
			// The checks of each source's own (build) read its secret
			// files, which are paths in the pod; the one about secrets in
			// its URL matters most here, where the URL is written into a
			// manifest.
			for _, sc := range c.sources {
				if err := credentialsIn(sc.url); err != nil {
					errs = append(errs, fmt.Errorf("--source %s: %w", fetch.RedactString(sc.url), err))
				}
			}
		}
	}
	if in.sidecar {
		addr := fs.Lookup("http-addr").Value.String()
		host, port, err := net.SplitHostPort(addr)
		if in.port, _ = strconv.Atoi(port); err != nil || in.port <= 0 || in.port > 65535 {
			errs = append(errs, fmt.Errorf("--http-addr %q: the sidecar's probes need the endpoints on a numeric port", addr))
		} else if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			errs = append(errs, fmt.Errorf("--http-addr %q: the kubelet probes the pod's IP, not loopback: listen on all addresses (:%d)", addr, in.port))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &injectRun{injection: in, file: opts.file}, nil
}

// credentialsIn refuses a source URL that holds a secret, as every backend
// does when it opens the source: a password in its userinfo, or S3 keys
// in its query.
func credentialsIn(raw string) error {
	u, err := fetch.Parse(raw)
	if err != nil {
		return nil // reported by the source's own checks
	}
	if _, ok := u.URL.User.Password(); ok {
		return errors.New("credentials in the URL are not accepted: give them as files (--git-password-file, --http-password-file, ...), which stay paths in the manifest")
	}
	q := u.URL.Query()
	for _, k := range s3.CredentialParams {
		if q.Has(k) {
			return fmt.Errorf("credentials in the URL (%s) are not accepted: use --s3-access-key-file and --s3-secret-key-file", k)
		}
	}
	return nil
}

// spelled keeps the values given to a flag as the user wrote them ("2m",
// not "2m0s"), for ferry's args: the manifest is theirs to read.
type spelled struct {
	flag.Value
	given []string
}

func (s *spelled) Set(v string) error {
	if err := s.Value.Set(v); err != nil {
		return err
	}
	if _, isList := s.Value.(*listFlag); !isList {
		s.given = nil // a later one wins
	}
	s.given = append(s.given, v)
	return nil
}

// IsBoolFlag lets --flag stand for --flag=true, as the wrapped flag does.
func (s *spelled) IsBoolFlag() bool {
	b, ok := s.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// kubeVersion is what --kube-version takes: 1.31, v1.31 or v1.31.2.
var kubeVersion = regexp.MustCompile(`^v?1\.(\d+)(\.\d+)?$`)

func checkKubeVersion(v string) error {
	m := kubeVersion.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("--kube-version %q: want a version like %s", v, defaultKubeVersion)
	}
	if minor, _ := strconv.Atoi(m[1]); minor < sidecarMinor {
		return fmt.Errorf("--kube-version %s has no native sidecars (1.%d or later): use --mode init, or a newer cluster", v, sidecarMinor)
	}
	return nil
}

func injectUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: ferry inject [-f FILE] [--mount-path PATH] [--container NAME]... [--mode sidecar|init] [run's flags]
       ferry inject -f FILE --config FILE [flags]

Reads Kubernetes YAML (-f FILE or standard input; several documents; a
Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod or List)
and writes it to standard output with ferry added to every pod template:
an emptyDir volume named ferry, mounted at --root in ferry and read-only at
--mount-path in the app containers, and ferry itself, in initContainers:

  sidecar  a native sidecar (restartPolicy: Always) running 'ferry run', with
           a startupProbe on /readyz that holds the app back until the first
           revision is published and a livenessProbe on /healthz
  init     a classic init container running 'ferry once'

Every flag of 'ferry run' (with --mode init, of 'ferry once') is checked as
that command would and written into ferry's args, secrets as the paths of
their files (mount their Secrets in the ferry container yourself). --root
defaults to --mount-path; a --config file is a path in the pod, passed on
unread, and needs --root. The environment is not read. Injecting again
changes nothing, or updates ferry in place when the flags changed; other
documents, fields, comments and key order are kept. A pod that already
mounts something else at --mount-path is refused, and exits 2.

Flags:
`)
	var opts injectOptions
	fs := flag.NewFlagSet(cmdInject, flag.ContinueOnError)
	opts.declare(fs)
	var defaults strings.Builder
	fs.SetOutput(&defaults)
	fs.PrintDefaults()
	fmt.Fprint(w, flagLine.ReplaceAllStringFunc(defaults.String(), func(s string) string {
		if s == "  -f" {
			return s
		}
		return "  --" + s[3:]
	}))
	fmt.Fprint(w, "\nand the flags of 'ferry run' ('ferry run --help') or 'ferry once'.\n")
}
