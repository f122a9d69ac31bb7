package oci

import (
	"fmt"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/archive"
)

// tagVersion maps an OCI tag to its version: "_" stands for "+".
func tagVersion(tag string) string { return strings.ReplaceAll(tag, "_", "+") }

// resolveTag picks the highest tag in the range from a listing.
func (s *Source) resolveTag(tags []string) (string, error) {
	tag, ok := fetch.HighestVersion(s.semver, tags, tagVersion)
	if !ok {
		return "", fmt.Errorf("no tag of %d matches %s%s", len(tags), fetch.SemverPrefix, s.semverText)
	}
	return tag, nil
}

// choosePlatform picks the manifest of an index for the platform asked
// for; without one, an index of a single manifest gives that one.
func (s *Source) choosePlatform(idx *v1.IndexManifest) (v1.Descriptor, error) {
	if s.platform == nil && len(idx.Manifests) == 1 {
		return idx.Manifests[0], nil
	}
	want := defaultPlatform
	if s.platform != nil {
		want = *s.platform
	}
	var have []string
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.Satisfies(want) {
			return m, nil
		}
		if m.Platform != nil {
			have = append(have, m.Platform.String())
		}
	}
	return v1.Descriptor{}, fetch.Permanent(fmt.Errorf("the index has no manifest for platform %s (it has: %s); give ?platform=", want, strings.Join(have, ", ")))
}

// chooseLayer picks the layer to publish: the one of the media type asked
// for; else the only layer; else the first tar or tar+gzip one.
func (s *Source) chooseLayer(m *v1.Manifest) (v1.Descriptor, error) {
	var have []string
	for _, l := range m.Layers {
		if s.layer != "" && string(l.MediaType) == s.layer {
			return l, nil
		}
		have = append(have, string(l.MediaType))
	}
	switch {
	case len(m.Layers) == 0:
		return v1.Descriptor{}, fetch.Permanent(fmt.Errorf("the manifest has no layer"))
	case s.layer != "":
		return v1.Descriptor{}, fetch.Permanent(fmt.Errorf("no layer of media type %s (the manifest has: %s)", s.layer, strings.Join(uniq(have), ", ")))
	case len(m.Layers) == 1:
		return m.Layers[0], nil
	}
	for _, l := range m.Layers {
		if f := formatOf(l.MediaType); f == archive.Tar || f == archive.TarGzip {
			return l, nil
		}
	}
	return v1.Descriptor{}, fetch.Permanent(fmt.Errorf("%d layers and none is a tar or tar+gzip: give ?layer=MEDIATYPE (the manifest has: %s)", len(m.Layers), strings.Join(uniq(have), ", ")))
}

func uniq(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// formatOf reads a layer's media type: "" for a blob that is not an
// archive ferry expands. Flux's, Helm's, Docker's and OCI's tar and
// tar+gzip types all end so.
func formatOf(mt types.MediaType) archive.Format {
	t := strings.ToLower(string(mt))
	switch {
	case strings.HasSuffix(t, "tar+gzip"), strings.HasSuffix(t, ".tar.gzip"), strings.HasSuffix(t, ".tar.gz"):
		return archive.TarGzip
	case strings.HasSuffix(t, ".tar"), strings.HasSuffix(t, "+tar"):
		return archive.Tar
	case strings.HasSuffix(t, "/zip"), strings.HasSuffix(t, "+zip"):
		return archive.Zip
	}
	return ""
}

// Annotations oras sets on a layer: the file's name, and whether it is a
// directory oras packed (and will unpack).
const (
	titleAnnotation  = "org.opencontainers.image.title"
	unpackAnnotation = "io.deis.oras.content.unpack"
)

// layout says how a layer is published: as an archive of format, or, when
// format is "", as the one file name.
func (s *Source) layout(l v1.Descriptor) (format archive.Format, name string, err error) {
	title := l.Annotations[titleAnnotation]
	switch s.extract {
	case "false":
		return "", fileName(title, s.repoBase), nil
	case "", "true":
		format = formatOf(l.MediaType)
		// `oras push r:t app.yaml` labels a plain file with the OCI tar
		// type; what it packed itself it marks for unpacking.
		if format == archive.Tar && l.MediaType == types.OCIUncompressedLayer && title != "" &&
			l.Annotations[unpackAnnotation] == "" && !strings.HasSuffix(strings.ToLower(title), ".tar") && s.extract == "" {
			format = ""
		}
	default:
		format = archive.Format(s.extract)
		if s.extract == "tgz" {
			format = archive.TarGzip
		}
	}
	if format != "" {
		return format, "", nil
	}
	if s.extract == "true" {
		return "", "", fetch.Permanent(fmt.Errorf("layer %s of media type %s is not an archive ferry expands (tar, tar+gzip, zip): give ?extract=false to publish it as one file, or ?extract=tar.gz", l.Digest, l.MediaType))
	}
	if s.subdir != "" {
		return "", "", fetch.Permanent(fmt.Errorf("//%s selects a sub-tree of an archive, but layer %s of media type %s is published as one file", s.subdir, l.Digest, l.MediaType))
	}
	return "", fileName(title, s.repoBase), nil
}

// fileName is the name a layer published whole gets: its title when that
// is a plain file name, else the repository's last path element.
func fileName(title, fallback string) string {
	if title != "" && title == path.Base(title) && title != "." && title != ".." && !strings.ContainsAny(title, "\\\x00") {
		return title
	}
	return fallback
}
