package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/ferrysync/ferry/fetch"
	"github.com/ferrysync/ferry/internal/report"
)

// go-containerregistry decodes each page of a tag listing whole and follows
// the registry's Link header for as long as there is one: these bound one
// listing by ferry's measure, whatever the registry sends.
const (
	// maxTagListBytes bounds the bodies of one listing, its pages together:
	// 60,000 tags of 128 characters (the longest the OCI spec allows), or
	// about half a million of the usual length.
	maxTagListBytes = 8 << 20
	// maxTagListPages bounds its pages, so that a registry paginating
	// forever is refused even when its pages are small: 100,000 tags at
	// 100 a page.
	maxTagListPages = 1000
)

// errTagListTooLarge is a listing past maxTagListBytes.
var errTagListTooLarge = fmt.Errorf("tag listing larger than %d bytes", maxTagListBytes)

// listTags lists the repository's tags with the puller (its credentials,
// its token), refusing a listing of more than maxTagListPages pages or
// maxTagListBytes bytes rather than holding what the registry sends.
func (s *Source) listTags(ctx context.Context, p *remote.Puller, hasCreds bool) ([]string, error) {
	ctx = context.WithValue(ctx, listBudgetKey{}, &listBudget{left: maxTagListBytes})
	l, err := p.Lister(ctx, s.repo) // reads the first page
	var tags []string
	for pages := 0; err == nil && l.HasNext(); pages++ {
		if pages == maxTagListPages {
			return nil, fetch.Permanent(fmt.Errorf("list tags: the listing did not end after %d pages, the most ferry follows: the registry keeps paginating", pages))
		}
		var page *remote.Tags
		if page, err = l.Next(ctx); err == nil {
			tags = append(tags, page.Tags...)
		}
	}
	switch {
	case errors.Is(err, errTagListTooLarge):
		return nil, fetch.Permanent(report.Errorf(err, "list tags: the listing is larger than %d bytes, the most ferry reads for one listing", maxTagListBytes))
	case err != nil:
		return nil, registryError(ctx, "list tags", err, hasCreds)
	}
	return tags, nil
}

// listBudgetKey is the context key of a listing's listBudget.
type listBudgetKey struct{}

// listBudget is what the pages of one listing may still read. They are
// read one after the other, never at once.
type listBudget struct{ left int64 }

// budgetTransport charges the response bodies of the requests whose
// context carries a listBudget to it; other requests pass untouched.
type budgetTransport struct{ next nethttp.RoundTripper }

func (t budgetTransport) RoundTrip(req *nethttp.Request) (*nethttp.Response, error) {
	resp, err := t.next.RoundTrip(req)
	b, ok := req.Context().Value(listBudgetKey{}).(*listBudget)
	if err != nil || !ok || resp.Body == nil {
		return resp, err
	}
	resp.Body = &budgetBody{rc: resp.Body, budget: b, over: resp.ContentLength > b.left}
	return resp, nil
}

// budgetBody fails, never truncates, once its budget is spent; a declared
// Content-Length over what was left fails the first read.
type budgetBody struct {
	rc     io.ReadCloser
	budget *listBudget
	over   bool // the declared Content-Length is over the budget
}

func (b *budgetBody) Read(p []byte) (int, error) {
	left := b.budget.left
	if b.over || left < 0 {
		return 0, errTagListTooLarge
	}
	if int64(len(p)) > left+1 {
		p = p[:left+1] // one byte past the budget is enough to know
	}
	n, err := b.rc.Read(p)
	if b.budget.left -= int64(n); b.budget.left < 0 {
		return n, errTagListTooLarge
	}
	return n, err
}

func (b *budgetBody) Close() error { return b.rc.Close() }
