// Package validate checks a staged revision before it is published: every
// JSON, YAML and TOML file parses, chosen files match a JSON Schema, and a
// command of the operator's exits 0. A refused revision is an *Error that
// says which check refused it and where.
package validate
