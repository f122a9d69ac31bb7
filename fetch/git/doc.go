// Package git is the git source: it polls a ref, fetches only new commits
// (depth 1 by default) into a bare object store kept under the source's
// state directory, and exports the commit's tree. It runs go-git in
// process, without the git binary: a git::file:// repository is read in
// place (local.go).
//
// # Polls and fetches
//
// A poll lists the ref and nothing else when it can: over HTTP(S), a
// server that speaks protocol v2 is asked ls-refs for the ref's candidates
// (one small POST, however many refs the repository holds; v2.go); an
// older server, and SSH and git:// (go-git speaks v0 there), advertise
// every ref. A ref that moved is fetched by the hash just listed, on the
// same session (session.go): a change costs one listing plus one fetch.
//
// # Revisions
//
// The revision is the commit SHA. With a //subdir it is the SHA of the
// subdirectory's tree, so a commit that leaves the subdirectory alone is
// no new revision (nothing published, nobody notified); OriginRevision
// still names the commit. With ?paths= it is a digest of the mode, id and
// path of every selected entry (paths.go), //subdir's tree id
// generalised. Learning that tree costs the fetch of the new commit (a
// thin pack); a poll that finds the ref unchanged costs one listing, also
// after a restart, since the object store keeps the last commit fetched.
//
// # Submodules
//
// ?submodules=recursive (the default, as git-sync's), shallow or off. A
// submodule is a pinned source of its own (submodule.go): its commit is
// fetched into a store under the source's state directory with the
// parent's credentials when it is on the same scheme, host and port (and
// none otherwise), and its tree written under its path through the same
// Writer. Each revision above covers the gitlinks it holds, so a moved
// submodule is a new revision; when .gitmodules maps a submodule into the
// published tree the mode is appended ("SHA-recursive"), since the same
// commit with empty submodule directories is another tree.
//
// # Limits
//
// What a fetch may receive follows from the revision limits (fetch.Limits:
// MaxBytes, MaxFileSize, MaxFiles), whatever the origin sends:
//
//   - Bytes: each session with the origin (a listing and the fetch that
//     follows it) may receive at most MaxBytes plus a margin of a quarter
//     of it, at least 16 MiB, for the trees and commits a pack also
//     carries and, with depth > 1, older versions of files. HTTP(S)
//     bodies, SSH connections and git:// connections (dialed by ferry's
//     own transport, gitproto.go) are counted as they are read, a ref
//     listing included; for every transport the pack is counted too as
//     it is written to the store.
//   - One object: at most MaxFileSize (or MaxBytes, when lower) plus
//     16 MiB. A pack compresses: a few kilobytes can stand for gigabytes.
//     A blob larger than MaxFileSize (or MaxBytes) is refused before it
//     is read.
//   - Objects: at most 4 per MaxFiles, plus 10,000.
//   - Building objects from their deltas: a pass over a pack (the index
//     pass, or the export's reads) may inflate and patch at most 4 times
//     what a session may receive. A pack's deltas are a few bytes each,
//     but each may stand for an object of the size bound above.
//
// A pinned commit that the server will not send by SHA comes with the full
// history of every branch and tag, which must fit too.
//
// Past a limit the fetch stops at once with a permanent error naming the
// limit, and leaves the object store as it found it. The pack is spooled to
// disk and checked object by object before it is indexed, so peak memory
// does not grow with what the origin sends. Within the limits it does grow
// with the largest object: a delta's result is held whole in memory.
//
// # The first fetch
//
// The pack of the first fetch into an empty store, a cold start's, is
// indexed by index.go in one pass that inflates each object once, checks
// it, hashes it and resolves its deltas from the pack file (8 MiB of delta
// bases cached, and the object built last whatever its size, so a chain
// costs a patch a delta), writes the .idx git index-pack would, and
// stops between objects once the fetch is cancelled; the export
// reads the objects back from that pack (packed.go). Later fetches bring
// thin packs, small, which go-git's parser stores loose (thin.go), after
// checkPack has read them against the bounds.
//
// A file:// repository is not received but read: the bounds on one object
// hold as each is read, and the Writer's limits bound the rest.
//
// # Signatures
//
// With Options.VerifyKeysFile only a commit (or, with ?verify=tag, an
// annotated tag) signed by one of its keys is published; it is checked
// in the store before anything is written, and checked again when the
// keys file changes (verify.go).
package git
