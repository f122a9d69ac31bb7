package kit

import (
	"errors"

	"github.com/ferrysync/ferry/internal/report"
)

// FileError is a file an option names that cannot be used. Its message
// says which file in plain words, for a sync that meets it (logs,
// /status); FieldError names the option instead, for a configuration
// error that the command line renders in its own vocabulary.
type FileError struct {
	Field string // of the backend's Options
	What  string // the file, in plain words
	Err   error  // names the path, never the content
}

func (e *FileError) Error() string { return e.What + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// FieldError turns a FileError in err into one that names its field
// ("{CAFile}: ..."); any other error is returned as it is.
func FieldError(err error) error {
	var fe *FileError
	if errors.As(err, &fe) {
		return report.Fieldf("{"+fe.Field+"}: %v", fe.Err)
	}
	return err
}
