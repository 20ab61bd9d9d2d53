// Package version holds Sesame's version, set at build time with
// -ldflags "-X github.com/sesame-knock/sesame/internal/version.Version=...".
package version

// Version is the release version; "dev" for a plain go build.
var Version = "dev"
