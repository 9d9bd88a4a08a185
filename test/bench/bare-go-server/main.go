// The floor below any Node server: Go's standard library HTTP/2 (cleartext, h2c) answering the ext_proc
// path with gRPC framing by hand, a fixed reply (hex in os.Args[1]) per message, then grpc-status 0.
// The same role as bare-http2-server.ts, in the runtime the Go gateway this project is modelled on uses.
// A benchmark reference only: it prints {"msg":"... server listening","grpcPort":N} when ready.
package main

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	message := []byte{0x0a, 0x02, 0x0a, 0x00}
	if len(os.Args) > 1 {
		decoded, err := hex.DecodeString(os.Args[1])
		if err != nil {
			panic(err)
		}
		message = decoded
	}
	reply := make([]byte, 5+len(message))
	binary.BigEndian.PutUint32(reply[1:5], uint32(len(message)))
	copy(reply[5:], message)

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		w.WriteHeader(http.StatusOK)
		flusher := w.(http.Flusher)
		prefix := make([]byte, 5)
		for {
			if _, err := io.ReadFull(r.Body, prefix); err != nil {
				break
			}
			if _, err := io.CopyN(io.Discard, r.Body, int64(binary.BigEndian.Uint32(prefix[1:5]))); err != nil {
				break
			}
			w.Write(reply)
			flusher.Flush()
		}
		w.Header().Set("Grpc-Status", "0")
	})
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	server := &http.Server{Handler: handler, Protocols: protocols}
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("{\"msg\":\"bare go server listening\",\"grpcPort\":%d}\n", listener.Addr().(*net.TCPAddr).Port)
	panic(server.Serve(listener))
}
