package handlers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kdsync/kdsync/handlers"
	"github.com/kdsync/kdsync/kdapi"
)

// The contract's example event, as the consumer receives it.
var (
	benchSubject = "identity.employee.hired." + testUser
	benchBody    = []byte(`{"specversion":"1.0","id":"` + testID + `","source":"hris/workday","type":"employee.hired",` +
		`"subject":"` + testUser + `","time":"2026-11-23T10:00:00.123Z","datacontenttype":"application/json",` +
		`"data":{"userId":"` + testUser + `","deptId":"` + testDept + `","role":1,"status":0,"name":"Sam"}}`)
	benchHeader = map[string][]string{"Nats-Msg-Id": {testID}}
)

func BenchmarkDecodeStructured(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	var d handlers.Decoder
	for b.Loop() {
		if _, err := d.Decode(benchSubject, benchHeader, benchBody); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBinary(b *testing.B) {
	b.ReportAllocs()
	header := binaryHeader(nil)
	body := []byte(binaryBody)
	b.SetBytes(int64(len(body)))
	var d handlers.Decoder
	for b.Loop() {
		if _, err := d.Decode(benchSubject, header, body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeManyNames decodes an event near the default size limit
// whose extension object has thousands of members: the worst case for the
// duplicate-name check, which switches to a map (one allocation per name)
// past 64 names in one object.
func BenchmarkDecodeManyNames(b *testing.B) {
	b.ReportAllocs()
	ext := []byte{'{'}
	for i := 0; len(ext) < 60<<10; i++ {
		if i > 0 {
			ext = append(ext, ',')
		}
		ext = fmt.Appendf(ext, `"k%d":%d`, i, i)
	}
	body := body(b, set("ext", string(append(ext, '}'))))
	b.SetBytes(int64(len(body)))
	var d handlers.Decoder
	for b.Loop() {
		if _, err := d.Decode(benchSubject, nil, body); err != nil {
			b.Fatal(err)
		}
	}
}

// noopUsers is a KooDrive that accepts everything at once.
type noopUsers struct{}

func (noopUsers) CreateUser(context.Context, kdapi.CreateUserRequest) error { return nil }
func (noopUsers) UpdateUser(context.Context, string, kdapi.UpdateUserRequest) error {
	return nil
}
func (noopUsers) GetUser(context.Context, string) (*kdapi.User, error) { return &kdapi.User{}, nil }
func (noopUsers) DeleteUser(context.Context, string) error             { return nil }

func BenchmarkApplyHired(b *testing.B) {
	b.ReportAllocs()
	ev, err := handlers.Decoder{}.Decode(benchSubject, nil, benchBody)
	if err != nil {
		b.Fatal(err)
	}
	h := &handlers.Handler{Users: noopUsers{}, Observe: func(handlers.Op, time.Duration, error) {}}
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Apply(ctx, ev, nil); err != nil {
			b.Fatal(err)
		}
	}
}
