// Package layout holds no code: its test checks the import rules of
// docs/architecture.md (and the whiteboard's "never" list) on the source
// tree, so that the layout the document describes stays the layout.
package layout
