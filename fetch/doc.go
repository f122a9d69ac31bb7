// Package fetch defines what a configuration source is: something that can
// tell whether its origin changed since the published revision and, if so,
// write the new tree through a Writer. Backends live in sub-packages (file,
// git, http, s3); URL grammar and dispatch live here.
package fetch
