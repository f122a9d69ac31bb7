package fetch

// Default limits on one revision: far above any configuration tree, low
// enough that a hostile or mistaken origin cannot fill the volume.
const (
	DefaultMaxBytes    int64 = 1 << 30   // 1 GiB per revision
	DefaultMaxFiles          = 50_000    // files and symlinks per revision
	DefaultMaxFileSize int64 = 256 << 20 // 256 MiB per file
)

// Limits bound what one revision may hold. The Writer enforces them on
// every entry; a source reads them to stop early, before it has downloaded
// what could only end over a limit (an endless listing, a huge pack).
// Zero means the default.
type Limits struct {
	MaxBytes    int64
	MaxFiles    int
	MaxFileSize int64
}

// WithDefaults returns l with every zero (or negative) limit set to its
// default.
func (l Limits) WithDefaults() Limits {
	l.MaxBytes = positiveOr(l.MaxBytes, DefaultMaxBytes)
	l.MaxFiles = positiveOr(l.MaxFiles, DefaultMaxFiles)
	l.MaxFileSize = positiveOr(l.MaxFileSize, DefaultMaxFileSize)
	return l
}

// positiveOr returns v when it is positive, else def.
func positiveOr[T int | int64](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}
