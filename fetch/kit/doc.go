// Package kit is what every source backend shares, so that each one
// writes only its protocol: secret files read by one rule, state files
// saved one way, errors that print one line and keep their cause, and
// configuration errors that name the fields of an Options struct, which
// the command line turns into its own vocabulary (flags, file keys).
package kit
