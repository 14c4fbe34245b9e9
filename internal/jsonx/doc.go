// Package jsonx appends JSON strings without reflection, for the encoders on hot paths (the audit trail's
// events and COPY rows). Its output is always valid JSON: invalid UTF-8 becomes U+FFFD, as encoding/json
// does, and nothing is escaped for HTML (the output is never embedded in a page).
package jsonx
