package audit

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/internal/jsonx"
)

// appendEventsJSON appends events as a JSON array of Event objects, decoding (encoding/json) exactly like
// json.Marshal(events) would, without its reflection: the stream writes one per event at the full
// denial rate, and this was its largest cost.
func appendEventsJSON(b []byte, events []*Event) []byte {
	b = append(b, '[')
	for i, e := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendEventJSON(b, e)
	}
	return append(b, ']')
}

func appendEventJSON(b []byte, e *Event) []byte {
	b = append(b, `{"id":`...)
	b = jsonx.AppendString(b, e.ID)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","kind":`...)
	b = jsonx.AppendString(b, e.Kind)
	b = append(b, `,"service":`...)
	b = jsonx.AppendString(b, e.Service)
	b = append(b, `,"domain":`...)
	b = jsonx.AppendString(b, e.Domain)
	b = append(b, `,"rule":`...)
	b = jsonx.AppendString(b, e.Rule)
	if len(e.Entries) > 0 {
		b = append(b, `,"entries":`...)
		b = appendEntriesJSON(b, e.Entries)
	}
	for _, f := range [...]struct{ name, v string }{{`,"client_ip":`, e.ClientIP}, {`,"proxy_ip":`, e.ProxyIP},
		{`,"method":`, e.Method}, {`,"host":`, e.Host}, {`,"path":`, e.Path}} {
		if f.v != "" {
			b = append(b, f.name...)
			b = jsonx.AppendString(b, f.v)
		}
	}
	b = append(b, `,"limit":{"name":`...)
	b = jsonx.AppendString(b, e.Limit.Name)
	b = append(b, `,"requests":`...)
	b = strconv.AppendUint(b, e.Limit.Requests, 10)
	b = append(b, `,"window_ns":`...)
	b = strconv.AppendInt(b, int64(e.Limit.Window), 10)
	b = append(b, `,"algorithm":`...)
	b = jsonx.AppendString(b, e.Limit.Algorithm)
	b = append(b, `},"remaining":`...)
	b = strconv.AppendUint(b, e.Remaining, 10)
	b = append(b, `,"retry_after_ns":`...)
	b = strconv.AppendInt(b, int64(e.RetryAfter), 10)
	b = append(b, `,"replica":`...)
	b = jsonx.AppendString(b, e.Replica)
	b = append(b, `,"config_version":"`...)
	b = strconv.AppendUint(b, e.ConfigVersion, 10)
	b = append(b, `","shadow":`...)
	b = strconv.AppendBool(b, e.Shadow)
	b = append(b, `,"degraded":`...)
	b = strconv.AppendBool(b, e.Degraded)
	if e.Change != nil {
		c, err := json.Marshal(e.Change) // rare: configuration changes
		if err == nil {
			b = append(b, `,"change":`...)
			b = append(b, c...)
		}
	}
	return append(b, '}')
}
