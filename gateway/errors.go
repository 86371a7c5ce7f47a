package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
)

// StatusClientClosedRequest is nginx's 499: the client went away before the
// response. It is only logged; nobody is left to receive it.
const StatusClientClosedRequest = 499

// errCutOff is counted against a backend whose response broke off mid-body.
var errCutOff = errors.New("upstream response cut off")

// errorMessages are deliberately generic: upstream details go to the log,
// not to clients.
var errorMessages = map[int]string{
	http.StatusNotFound:           "no route",
	http.StatusBadGateway:         "upstream unavailable",
	http.StatusServiceUnavailable: "no instance available",
	http.StatusGatewayTimeout:     "upstream timeout",
}

// upstreamStatus maps a forward error to a status and reports whether the
// error counts against the backend. The client's own cancellation never does.
func upstreamStatus(r *http.Request, err error) (status int, counted bool) {
	switch {
	case clientGone(r):
		return StatusClientClosedRequest, false
	case isTimeout(err):
		return http.StatusGatewayTimeout, true
	}
	return http.StatusBadGateway, true
}

func clientGone(r *http.Request) bool { return r.Context().Err() == context.Canceled }

// isTimeout covers ResponseHeaderTimeout (whose error Is DeadlineExceeded),
// dial timeouts and request deadlines.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeError sends the short JSON error body, unless the response has
// already begun (then the status stands as sent).
func (x *exchange) writeError(status int) {
	if x.rec.headerSent() {
		return
	}
	msg, ok := errorMessages[status]
	if !ok {
		msg = http.StatusText(status)
	}
	body := `{"error":` + strconv.Quote(msg) + `,"status":` + strconv.Itoa(status) + "}\n"
	h := x.rec.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	x.rec.WriteHeader(status)
	_, _ = x.rec.Write([]byte(body))
}
