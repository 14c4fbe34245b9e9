package extauthz

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the "proto" codec wrapped below
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Codec is the gRPC codec to serve Envoy with (grpc.ForceServerCodecV2(extauthz.Codec())). It is the
// standard proto codec, except that a request whose string fields hold invalid UTF-8 is not refused.
//
// Envoy copies header bytes and descriptor values into proto3 string fields as they are, and the standard
// codec rejects such a message with INTERNAL before any handler runs — which Envoy's failure_mode_allow
// turns into "allowed": a client could skip every limit by sending one byte ≥ 0x80 in a header. This codec
// instead rewrites each invalid byte of a string field as U+FFFD followed by its two hex digits (so
// different invalid values stay different keys) and decodes the result.
func Codec() encoding.CodecV2 { return lenientCodec{std: encoding.GetCodecV2("proto")} }

type lenientCodec struct{ std encoding.CodecV2 }

func (c lenientCodec) Name() string                           { return c.std.Name() }
func (c lenientCodec) Marshal(v any) (mem.BufferSlice, error) { return c.std.Marshal(v) }
func (c lenientCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.std.Unmarshal(data, v)
	var utf interface{ InvalidUTF8() bool }
	if err == nil || !errors.As(err, &utf) || !utf.InvalidUTF8() {
		return err
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	fixed, ferr := sanitizeStrings(data.Materialize(), m.ProtoReflect().Descriptor(), 0)
	if ferr != nil {
		return fmt.Errorf("%w (and %v)", err, ferr)
	}
	proto.Reset(m)
	return proto.Unmarshal(fixed, m)
}

// maxNesting bounds the recursion of sanitizeStrings (proto's own default limit is 10000; Envoy's messages
// are shallow).
const maxNesting = 64

// sanitizeStrings returns b (the wire form of a message of type md) with the invalid UTF-8 of every string
// field, nested messages and map entries included, escaped. Unknown fields are kept as they are.
func sanitizeStrings(b []byte, md protoreflect.MessageDescriptor, depth int) ([]byte, error) {
	if depth > maxNesting {
		return nil, errors.New("message nested too deeply")
	}
	out := make([]byte, 0, len(b)+16)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil || (fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.MessageKind) {
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return nil, protowire.ParseError(m)
			}
			out = append(out, b[:n+m]...)
			b = b[n+m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return nil, protowire.ParseError(m)
		}
		b = b[n+m:]
		if fd.Kind() == protoreflect.StringKind {
			v = escapeInvalidUTF8(v)
		} else {
			var err error
			if v, err = sanitizeStrings(v, fd.Message(), depth+1); err != nil {
				return nil, err
			}
		}
		out = protowire.AppendTag(out, num, protowire.BytesType)
		out = protowire.AppendBytes(out, v)
	}
	return out, nil
}

// escapeInvalidUTF8 returns s with every byte that is not part of valid UTF-8 replaced by U+FFFD and the
// byte's two lower-case hex digits.
func escapeInvalidUTF8(s []byte) []byte {
	if utf8.Valid(s) {
		return s
	}
	const hexDigits = "0123456789abcdef"
	out := make([]byte, 0, len(s)+8)
	for len(s) > 0 {
		r, size := utf8.DecodeRune(s)
		if r == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
			out = append(out, hexDigits[s[0]>>4], hexDigits[s[0]&0xf])
		} else {
			out = append(out, s[:size]...)
		}
		s = s[size:]
	}
	return out
}
