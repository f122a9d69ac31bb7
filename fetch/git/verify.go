package git

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/fetch/trust"
	"github.com/ferrysync/ferry/internal/report"
)

// With Options.VerifyKeysFile, a commit is published only when its
// signature (OpenPGP or SSH, as git commit -S makes them) verifies
// against a key of that file; with ?verify=tag, the annotated tag the ref
// names must be signed instead, under the ref's name (the signature
// covers the tag's name, not the ref), and with tag-and-head both. The check
// runs on the objects in the store, after the fetch and before anything
// is written through the Writer; for a //subdir source it is the commit's
// signature that is checked, whatever the revision is named after.
//
// The keys file is read on every Fetch. A commit that verified is not
// verified again while the file keeps its content; when the file changes,
// the published commit is verified again from the store (no download):
// one that no longer verifies stays published, and Fetch fails with
// fetch.ErrPublishedUntrusted until a commit that verifies replaces it.

// verifyMode is the ?verify= option.
type verifyMode int

const (
	verifyOff verifyMode = iota
	verifyHead
	verifyTag
	verifyTagAndHead
)

var verifyModes = map[string]verifyMode{"head": verifyHead, "tag": verifyTag, "tag-and-head": verifyTagAndHead}

func (m verifyMode) head() bool { return m == verifyHead || m == verifyTagAndHead }
func (m verifyMode) tag() bool  { return m == verifyTag || m == verifyTagAndHead }

// signatures is what a source must have signed, and by whom.
type signatures struct {
	mode    verifyMode
	keys    *trust.File
	keyring *trust.Keyring // as the current Fetch read it
	ok      verified       // the last commit (and tag) that verified
}

// verified remembers what verified, and against which keys file content.
type verified struct {
	commit, tag plumbing.Hash
	name        string // the tag's name, for ?verify=tag: the same object under another name is not trusted
	keys        string
}

// setup checks the verify option against the keys file and the ref.
func (g *signatures) setup(keysFile, ref string, pinned bool, display string) []error {
	var errs []error
	switch {
	case g.mode != verifyOff && keysFile == "":
		errs = append(errs, report.Fieldf("git URL %s asks for signed commits (?verify=): give {VerifyKeysFile}", display))
	case keysFile != "" && g.mode == verifyOff:
		g.mode = verifyHead
	}
	if g.mode.tag() && !namesTag(ref, pinned) {
		errs = append(errs, fmt.Errorf("git URL %s: verify=tag checks the annotated tag the ref names, and this ref names none: give ?ref=TAG or ?ref=refs/tags/TAG", display))
	}
	if keysFile != "" {
		g.keys = trust.NewFile(keysFile)
	}
	return errs
}

// namesTag tells whether ref names a tag whose name the signed tag object
// must carry (tagName): a short name or semver: range, or refs/tags/NAME.
// A ref elsewhere under refs/ names none: a signed tag of any name it
// pointed at, an older release's, would verify.
func namesTag(ref string, pinned bool) bool {
	if ref == "" || pinned {
		return false
	}
	return !strings.HasPrefix(ref, "refs/") || strings.HasPrefix(ref, tagsPrefix.String())
}

// loadKeys reads the keys file, when signatures are checked.
func (s *Source) loadKeys() error {
	if s.sig.mode == verifyOff {
		return nil
	}
	k, err := s.sig.keys.Load()
	if err != nil {
		return fmt.Errorf("git %s: keys file: %w", s.display, err)
	}
	s.sig.keyring = k
	return nil
}

// isTrusted tells whether commit (and, for ?verify=tag, tag, under the
// name the ref gives it now) verified against the keys file as it reads
// now: a poll that finds them unchanged needs no check, and no object
// store.
func (s *Source) isTrusted(commit, tag plumbing.Hash) bool {
	ok := s.sig.ok
	return s.sig.mode == verifyOff ||
		ok.keys == s.sig.keyring.Digest() && ok.commit == commit && (!s.sig.mode.tag() || ok.tag == tag && ok.name == s.tagName())
}

// tip is the object the ref names that is fetched and verified: the
// annotated tag when its signature is checked, else the commit.
func (s *Source) tip(want wantRef) plumbing.Hash {
	if s.sig.mode.tag() && !want.tag.IsZero() {
		return want.tag
	}
	return want.hash
}

// checkTrust verifies commit c, and the tag tip when ?verify=tag, read
// from objs. published tells that c is what is published now, so that a
// failure says it stays. The error wraps fetch.ErrUntrusted, names the
// commit and the key, and is permanent.
func (s *Source) checkTrust(objs storer.EncodedObjectStorer, tip plumbing.Hash, c *object.Commit, published bool) error {
	if s.sig.mode == verifyOff {
		return nil
	}
	var tag plumbing.Hash
	var signers []string
	var err error
	if s.sig.mode.tag() {
		var who string
		tag, who, err = s.verifyTag(objs, tip)
		signers = append(signers, who)
	}
	if err == nil && s.sig.mode.head() {
		var who string
		who, err = s.verifyObject(c.PGPSignature, c.EncodeWithoutSignature)
		signers = append(signers, who)
	}
	if err != nil {
		if errors.Is(err, fetch.ErrUntrusted) && published {
			err = fmt.Errorf("%w; %w, and stays published until a commit that verifies replaces it", err, fetch.ErrPublishedUntrusted)
		}
		err = fmt.Errorf("git verify %s commit %s: %w", s.display, c.Hash, err)
		if errors.Is(err, fetch.ErrUntrusted) {
			err = fetch.Permanent(err)
		}
		return err
	}
	ok := verified{commit: c.Hash, tag: tag, keys: s.sig.keyring.Digest()}
	if s.sig.mode.tag() {
		ok.name = s.tagName()
	}
	if ok != s.sig.ok {
		s.log.Info("git signature verified", "commit", c.Hash.String(), "signed_by", strings.Join(signers, ","))
		s.sig.ok = ok
	}
	return nil
}

// verifyTag verifies the annotated tag tip, which must be the tag the
// ref names (tagName). It returns the tag's hash and who signed it.
func (s *Source) verifyTag(objs storer.EncodedObjectStorer, tip plumbing.Hash) (plumbing.Hash, string, error) {
	obj, err := objs.EncodedObject(plumbing.AnyObject, tip)
	if err != nil {
		return tip, "", storeErr(fmt.Errorf("tag %s: %w", tip, err))
	}
	if obj.Type() != plumbing.TagObject {
		return tip, "", fmt.Errorf("%w: ref %q is a branch or a lightweight tag, which has no signature of its own (verify=tag needs a signed annotated tag)", fetch.ErrUntrusted, s.ref)
	}
	if obj.Size() > s.bounds.objectSize {
		return tip, "", overLimit("tag %s holds %d bytes, more than the limits allow (%d)", tip, obj.Size(), s.bounds.objectSize)
	}
	t, err := object.DecodeTag(objs, obj)
	if err != nil {
		return tip, "", storeErr(fmt.Errorf("tag %s: %w", tip, err))
	}
	if name := s.tagName(); name == "" || t.Name != name {
		// Anyone who may push a ref can point it at an older release's
		// signed tag: the signature holds, the name in it does not.
		return tip, "", fmt.Errorf("%w: the ref names tag %q, but its tag object %s is tag %q, signed under that name", fetch.ErrUntrusted, name, tip, t.Name)
	}
	who, err := s.verifyObject(t.PGPSignature, t.EncodeWithoutSignature)
	if err != nil {
		return tip, who, fmt.Errorf("tag %s (%s): %w", t.Name, tip, err)
	}
	return tip, who, nil
}

// tagName is the name the annotated tag the ref points at must carry:
// the tag ?ref=semver: picked, or the ref's own name (refs/tags/NAME is
// NAME); "" for a ref outside refs/tags/, which names no tag (setup
// refuses one with verify=tag, and verifyTag any tag under it).
func (s *Source) tagName() string {
	if s.semver != nil {
		if t := s.tag.Load(); t != nil {
			return *t
		}
		return ""
	}
	name, ok := strings.CutPrefix(s.ref, tagsPrefix.String())
	switch {
	case ok:
		return name
	case strings.HasPrefix(s.ref, "refs/"):
		return ""
	}
	return s.ref
}

// verifyObject checks sig over the bytes encode writes: the object as git
// signed it, without its signature.
func (s *Source) verifyObject(sig string, encode func(plumbing.EncodedObject) error) (string, error) {
	payload := &plumbing.MemoryObject{}
	if err := encode(payload); err != nil {
		return "", err
	}
	r, err := payload.Reader()
	if err != nil {
		return "", err
	}
	defer r.Close()
	return s.sig.keyring.Verify(sig, io.Reader(r), trust.NamespaceGit)
}
