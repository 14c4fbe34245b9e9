// Package examples holds the bundled limits configuration: commented example files that are also the
// default configuration Floodgate serves when no --config is given (config.Default).
package examples

import "embed"

// FS holds every *.yaml file of this directory, one domain per file.
//
//go:embed *.yaml
var FS embed.FS
