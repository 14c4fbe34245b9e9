package dashboard

import (
	"embed"
	"io/fs"
)

// web holds the built UI: index.html, dist/ (app.js, the Tailwind CSS built by `make ui`) and vendor/
// (uPlot). They are committed, so `go build` alone gives a complete binary; nothing loads from a CDN.
// Served as "/" (index.html) and "/assets/dist/...", "/assets/vendor/...".
//
//go:embed web/index.html web/dist web/vendor
var web embed.FS

func webAssets() fs.FS {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // a constant path into an embedded FS: cannot fail
	}
	return sub
}
