package cluster

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skeinlog/skein/internal/tlsconf"
)

// tlsStream is the Raft transport's stream layer with mutual TLS: a
// connection is handed to Raft only after its handshake showed a broker
// certificate the CA signed, and this broker dials with its own. Handshakes
// run off the accept loop, bounded in time, so a peer that never finishes
// one holds up no one; refused ones are logged once per source host.
type tlsStream struct {
	lis      net.Listener
	adv      net.Addr
	src      *tlsconf.Source
	refusals *tlsconf.Refusals

	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// handshakeTimeout bounds one Raft TLS handshake.
const handshakeTimeout = 10 * time.Second

// errNotAdvertisable is raft's own refusal of an address peers cannot dial.
var errNotAdvertisable = errors.New("the Raft address is bound to every interface: give an address other brokers can reach to advertise")

func listenTLSStream(bind string, adv net.Addr, src *tlsconf.Source, log *slog.Logger) (*tlsStream, error) {
	lis, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &tlsStream{lis: lis, adv: adv, src: src, refusals: tlsconf.NewRefusals(log, "raft"),
		conns: make(chan net.Conn), done: make(chan struct{})}
	if a, ok := s.Addr().(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() {
		lis.Close()
		return nil, errNotAdvertisable
	}
	go s.acceptLoop()
	return s, nil
}

func (s *tlsStream) acceptLoop() {
	for {
		c, err := s.lis.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-s.done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		go s.handshake(c)
	}
}

func (s *tlsStream) handshake(c net.Conn) {
	tc := tls.Server(c, s.src.PeerServerConfig())
	tc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		s.refusals.Log(c.RemoteAddr(), err)
		c.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	select {
	case s.conns <- tc:
	case <-s.done:
		tc.Close()
	}
}

// Accept returns the next connection whose handshake succeeded.
func (s *tlsStream) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Dial connects to a broker's Raft address over mutual TLS.
func (s *tlsStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, s.src.RaftClientConfig())
	tc.SetDeadline(time.Now().Add(max(timeout, time.Second)))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

func (s *tlsStream) Close() error {
	s.once.Do(func() { close(s.done) })
	return s.lis.Close()
}

func (s *tlsStream) Addr() net.Addr {
	if s.adv != nil {
		return s.adv
	}
	return s.lis.Addr()
}
