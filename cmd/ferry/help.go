package main

import (
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// commandHelp is what each command does, above its flags.
var commandHelp = map[string]string{
	cmdRun: `Usage: ferry run --source [NAME=]URL ... --root DIR [flags]
       ferry run --config FILE [flags]

Syncs every source forever: polls each --period, publishes each new revision
with an atomic swap of ROOT/NAME and tells the app (--notify-*).
`,
	cmdOnce: `Usage: ferry once --source [NAME=]URL ... --root DIR [flags]
       ferry once --config FILE [flags]

Publishes one revision of every source and exits 0, or 1 when a source still
fails after --once-timeout. It tells the app nothing: its app has not started
yet (an init container, ExecStartPre). The flags below are the ones it uses;
run's (--notify-*, --period, --http-addr...) are accepted, so that one argument
list serves 'once' and 'run', checked, and ignored with a warning.
`,
	cmdCheck: `Usage: ferry check --config FILE [flags]
       ferry check --source [NAME=]URL ... --root DIR [flags]

Checks the configuration as 'run' would, without any network access and
without touching the root, and prints the effective configuration: every
setting of every source and where it came from (default, flag, env, file).
Secrets show as the paths of their files. Exits 0 when it is valid, 2 with
every problem when it is not. It accepts every flag of run and once.
`,
}

// configHelp is how settings are given, for every command.
const configHelp = `Every flag may also come from the environment as FERRY_FLAG (upper case, dashes
to underscores); the command line wins. With --config FILE (YAML), settings
come from the file too: its keys are the flag names without the dashes, global
settings and the sources' defaults at the top level, and a list of sources,
each with a name, a url and its own settings:

  root: /srv/config
  sources:
    - name: app
      url: git::https://git.example.com/org/app.git?ref=main
      git-password-file: /etc/ferry/app-token
      notify-url: [http://127.0.0.1:8080/-/reload]

A setting given both in the file and by a flag or the environment must say
the same; --source and the file's sources exclude each other. The file is
read once at start: a change needs a restart. 'ferry check' shows the result.
`

func usage(fs *flag.FlagSet, cmd string) {
	w := fs.Output()
	fmt.Fprintf(w, "%s\n%s\n%s\nFlags:\n", commandHelp[cmd], configHelp, sourceHelp)
	// The flag package prints "-name"; the README, the examples and
	// every git-sync or kubectl user write "--name" (both parse).
	var defaults strings.Builder
	fs.SetOutput(&defaults)
	fs.PrintDefaults()
	fs.SetOutput(w)
	fmt.Fprint(w, flagLine.ReplaceAllString(defaults.String(), "  --$1"))
}

// flagLine is the start of a flag's line in PrintDefaults' output.
var flagLine = regexp.MustCompile(`(?m)^  -([a-z])`)

func topUsage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  ferry run   --source [NAME=]URL ... --root DIR [flags]   sync forever
  ferry once  --source [NAME=]URL ... --root DIR [flags]   sync once, exit
  ferry run   --config FILE [flags]                        the same, sources from a file
  ferry check --config FILE [flags]                        check the configuration, show it
  ferry inject [-f FILE] [run's flags]                     add ferry to Kubernetes YAML
  ferry version

Run 'ferry COMMAND --help' for the flags of a command.
`)
}
