package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// The YAML is edited as yaml.v3 nodes, which keep comments and key order
// through a round trip: only what ferry owns is replaced or added.

// inject returns data, every document of it, with ferry added to each
// workload's pod spec. Problems name their document; nothing is returned
// when there is one.
func (in *injection) inject(data []byte) ([]byte, error) {
	in.found = map[string]bool{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		doc := &yaml.Node{}
		err := dec.Decode(doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", len(docs)+1, err)
		}
		docs = append(docs, doc)
	}
	var errs []error
	for i, doc := range docs {
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue
		}
		if err := in.object(doc.Content[0]); err != nil {
			errs = append(errs, fmt.Errorf("document %d %w", i+1, err))
		}
	}
	for _, want := range in.containers {
		if !in.found[want] {
			errs = append(errs, fmt.Errorf("--container %s: no workload has a container of that name", want))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	for _, doc := range docs {
		if err := enc.Encode(doc); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// podSpecPaths are where each workload kind holds its pod spec.
var podSpecPaths = map[string][]string{
	"Pod":         {"spec"},
	"Deployment":  {"spec", "template", "spec"},
	"StatefulSet": {"spec", "template", "spec"},
	"DaemonSet":   {"spec", "template", "spec"},
	"ReplicaSet":  {"spec", "template", "spec"},
	"Job":         {"spec", "template", "spec"},
	"CronJob":     {"spec", "jobTemplate", "spec", "template", "spec"},
}

// object adds ferry to obj's pod spec, or to each item of a List; other
// kinds are left alone. An error starts with the object's kind and name.
func (in *injection) object(obj *yaml.Node) error {
	kind := scalarAt(obj, "kind")
	label := fmt.Sprintf("(%s %s)", kind, scalarAt(lookup(obj, "metadata"), "name"))
	if kind == "List" {
		items := lookup(obj, "items")
		if items == nil {
			return nil
		}
		for i, item := range items.Content {
			if item.Kind != yaml.MappingNode {
				continue
			}
			if err := in.object(item); err != nil {
				return fmt.Errorf("%s item %d %w", label, i+1, err)
			}
		}
		return nil
	}
	path, ok := podSpecPaths[kind]
	if !ok {
		return nil
	}
	spec := obj
	way := []*yaml.Node{obj}
	for _, key := range path {
		if spec = lookup(spec, key); spec == nil || spec.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: no pod spec at %s", label, dotted(path))
		}
		way = append(way, spec)
	}
	injected, err := in.pod(spec)
	if err != nil {
		return fmt.Errorf("%s: %w", label, err)
	}
	if injected {
		// What ferry adds is written in block style, which a flow
		// collection around it would force into flow: the way to the pod
		// spec, and in it what holds ferry's additions, become block.
		for _, n := range way {
			n.Style &^= yaml.FlowStyle
		}
	}
	return nil
}

func dotted(path []string) string {
	s := ""
	for _, p := range path {
		s += "." + p
	}
	return s[1:]
}

// pod adds ferry, its volume and the app containers' mounts to spec, or
// updates what an earlier injection added, and reports whether it did.
func (in *injection) pod(spec *yaml.Node) (bool, error) {
	containers := lookup(spec, "containers")
	if containers == nil || containers.Kind != yaml.SequenceNode {
		return false, errors.New("no containers")
	}
	var names []string
	for _, c := range containers.Content {
		names = append(names, scalarAt(c, "name"))
	}
	if slices.Contains(names, ferryName) {
		return false, fmt.Errorf("an app container is named %s, the name of the one inject adds", ferryName)
	}
	// With --container, a pod spec that has none of the names is another
	// app's: it is left alone.
	if in.containers != nil && !slices.ContainsFunc(names, func(n string) bool { return slices.Contains(in.containers, n) }) {
		return false, nil
	}
	for _, n := range names {
		in.found[n] = true
	}
	targets := func(name string) bool { return in.containers == nil || slices.Contains(in.containers, name) }
	for _, c := range containers.Content {
		if targets(scalarAt(c, "name")) {
			if err := mountFree(c, in.mountPath); err != nil {
				return false, err
			}
		}
	}
	inits := ensure(spec, "initContainers", yaml.SequenceNode, "containers")
	f := named(inits, ferryName)
	if f == nil {
		f = yMap("name", yStr(ferryName), "image", yStr(in.image))
		inits.Content = append(inits.Content, f)
	}
	if err := mountFree(f, in.root); err != nil {
		return false, err
	}
	volumes := ensure(spec, "volumes", yaml.SequenceNode, "")
	if v := named(volumes, ferryName); v == nil {
		volumes.Content = append(volumes.Content, yMap("name", yStr(ferryName), "emptyDir", flow(yMap())))
	} else if lookup(v, "emptyDir") == nil {
		return false, fmt.Errorf("a volume named %s is there and is not an emptyDir", ferryName)
	}
	in.container(f)
	for _, n := range []*yaml.Node{spec, containers, inits, f, volumes} {
		n.Style &^= yaml.FlowStyle
	}
	for _, c := range containers.Content {
		if targets(scalarAt(c, "name")) {
			c.Style &^= yaml.FlowStyle
			setMount(c, in.mountPath, true)
		} else if mounts := lookup(c, "volumeMounts"); mounts != nil {
			mounts.Content = slices.DeleteFunc(mounts.Content, func(m *yaml.Node) bool { return scalarAt(m, "name") == ferryName })
			if len(mounts.Content) == 0 {
				remove(c, "volumeMounts")
			}
		}
	}
	return true, nil
}

// mountFree fails when container c mounts a volume other than ferry's at p.
func mountFree(c *yaml.Node, p string) error {
	mounts := lookup(c, "volumeMounts")
	if mounts == nil {
		return nil
	}
	for _, m := range mounts.Content {
		if scalarAt(m, "mountPath") == p && scalarAt(m, "name") != ferryName {
			return fmt.Errorf("container %s already mounts volume %s at %s", scalarAt(c, "name"), scalarAt(m, "name"), p)
		}
	}
	return nil
}

// setMount mounts ferry's volume in c at p.
func setMount(c *yaml.Node, p string, readOnly bool) {
	mounts := lookup(c, "volumeMounts")
	if mounts == nil || mounts.Kind != yaml.SequenceNode {
		// At the end of an app's container, in its place in ferry's.
		mounts = ySeq()
		if readOnly {
			set(c, "volumeMounts", mounts)
		} else {
			place(c, "volumeMounts", mounts)
		}
	}
	m := named(mounts, ferryName)
	if m == nil {
		m = yMap("name", yStr(ferryName))
		mounts.Content = append(mounts.Content, m)
	}
	set(m, "mountPath", yStr(p))
	if readOnly {
		set(m, "readOnly", yBool(true))
	} else {
		remove(m, "readOnly")
	}
}

// container makes c ferry's container as this injection wants it. inject
// owns the command (args), restartPolicy, the port, the probes and the
// volume's mount; the image, env, resources and securityContext are
// those of deploy/ when c has none, and are otherwise the user's.
func (in *injection) container(c *yaml.Node) {
	if in.imageGiven {
		place(c, "image", yStr(in.image))
	}
	if in.sidecar {
		place(c, "restartPolicy", yStr("Always"))
	} else {
		remove(c, "restartPolicy")
	}
	args := ySeq()
	for _, a := range in.args {
		args.Content = append(args.Content, yStr(a))
	}
	place(c, "args", args)
	if lookup(c, "env") == nil {
		// The Go runtime's soft limit, below the container's memory limit.
		place(c, "env", ySeq(yMap("name", yStr("GOMEMLIMIT"), "value", yStr("48MiB"))))
	}
	if in.sidecar {
		place(c, "ports", ySeq(yMap("name", yStr(ferryName), "containerPort", yInt(in.port))))
		startup := yMap(
			"httpGet", yMap("path", yStr("/readyz"), "port", yStr(ferryName)),
			"periodSeconds", yInt(2), "failureThreshold", yInt(150))
		startup.Content[0].HeadComment = "# A slow first clone may take minutes: 150 x 2s = 5 minutes."
		merge(c, "startupProbe", startup)
		merge(c, "livenessProbe", yMap(
			"httpGet", yMap("path", yStr("/healthz"), "port", yStr(ferryName)),
			"periodSeconds", yInt(10), "timeoutSeconds", yInt(2), "failureThreshold", yInt(3)))
	} else {
		for _, k := range []string{"ports", "startupProbe", "livenessProbe"} {
			remove(c, k)
		}
	}
	if lookup(c, "resources") == nil {
		place(c, "resources", yMap(
			"requests", yMap("cpu", yStr("10m"), "memory", yStr("32Mi")),
			"limits", yMap("memory", yStr("64Mi"))))
	}
	if lookup(c, "securityContext") == nil {
		place(c, "securityContext", yMap(
			"allowPrivilegeEscalation", yBool(false),
			"readOnlyRootFilesystem", yBool(true),
			"capabilities", yMap("drop", flow(ySeq(yStr("ALL"))))))
	}
	setMount(c, in.root, false)
}

// containerKeys is the order of the keys inject writes in its container,
// that of deploy/: a key added to an earlier injection's container goes
// where it would have been, so that switching modes is as if injected anew.
var containerKeys = []string{"name", "image", "restartPolicy", "args", "env", "ports", "startupProbe", "livenessProbe", "resources", "securityContext", "volumeMounts"}

// place sets key in container c: where it is, or after the last key
// that comes before it in containerKeys.
func place(c *yaml.Node, key string, v *yaml.Node) {
	if lookup(c, key) != nil {
		set(c, key, v)
		return
	}
	rank := slices.Index(containerKeys, key)
	if rank < 0 {
		set(c, key, v)
		return
	}
	at := 0
	for i := 0; i+1 < len(c.Content); i += 2 {
		if r := slices.Index(containerKeys, c.Content[i].Value); r >= 0 && r < rank {
			at = i + 2
		}
	}
	c.Content = slices.Insert(c.Content, at, yStr(key), v)
}

// Node helpers. A mapping's Content alternates keys and values.

func lookup(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func scalarAt(m *yaml.Node, key string) string {
	if v := lookup(m, key); v != nil && v.Kind == yaml.ScalarNode {
		return v.Value
	}
	return ""
}

// set replaces the value of key in m, where it is, or adds key at the end.
func set(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			// Comments on the old value stay with its key.
			old := m.Content[i+1]
			v.LineComment, v.FootComment = old.LineComment, old.FootComment
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, yStr(key), v)
}

// merge sets key in m to v, key by key where both are mappings: what the
// user added to a probe, and comments, stay.
func merge(m *yaml.Node, key string, v *yaml.Node) {
	old := lookup(m, key)
	if old == nil || old.Kind != yaml.MappingNode || v.Kind != yaml.MappingNode {
		place(m, key, v)
		return
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		merge(old, v.Content[i].Value, v.Content[i+1])
	}
}

func remove(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = slices.Delete(m.Content, i, i+2)
			return
		}
	}
}

// ensure returns the value of key in m, adding an empty one of kind first
// when there is none: before the key before, or at the end.
func ensure(m *yaml.Node, key string, kind yaml.Kind, before string) *yaml.Node {
	if v := lookup(m, key); v != nil && v.Kind == kind {
		return v
	}
	v := &yaml.Node{Kind: kind}
	if lookup(m, key) != nil {
		set(m, key, v)
		return v
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if before != "" && m.Content[i].Value == before {
			m.Content = slices.Insert(m.Content, i, yStr(key), v)
			return v
		}
	}
	m.Content = append(m.Content, yStr(key), v)
	return v
}

// named returns the element of seq whose name is name.
func named(seq *yaml.Node, name string) *yaml.Node {
	for _, e := range seq.Content {
		if scalarAt(e, "name") == name {
			return e
		}
	}
	return nil
}

func yMap(kv ...any) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		m.Content = append(m.Content, yStr(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return m
}

func ySeq(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Content: items}
}

func flow(n *yaml.Node) *yaml.Node { n.Style = yaml.FlowStyle; return n }

func yStr(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func yInt(n int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(n)}
}

func yBool(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}
