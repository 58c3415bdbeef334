package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// KeyEnv is the environment variable read when --cluster-key is not given.
const KeyEnv = "MACDIST_CLUSTER_KEY"

// Secrets are what the cluster key gives: the gossip encryption key, the
// control service's token and its TLS identity. Each is derived with its
// own HMAC label, so that none of them reveals another or the key.
type Secrets struct {
	// Key is the cluster key as given; empty on an all-loopback run
	// started without one.
	Key string
	// Gossip encrypts memberlist traffic (AES-256-GCM); nil without a key.
	Gossip []byte
	// Token authenticates every control RPC.
	Token  string
	tlsKey ed25519.PrivateKey // nil without a key: the control service is then plaintext on loopback
}

func derive(key, label string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("macdist/" + label))
	return m.Sum(nil)
}

// NewSecrets derives the run's secrets from key. An empty key yields no
// encryption and a token everyone knows, which is only acceptable when
// nothing listens beyond the loopback interface: callers check that with
// RequireKey.
func NewSecrets(key string) Secrets {
	s := Secrets{Key: key, Token: hex.EncodeToString(derive(key, "control-token/v1"))}
	if key != "" {
		s.Gossip = derive(key, "gossip/v1")
		s.tlsKey = ed25519.NewKeyFromSeed(derive(key, "control-tls/v1"))
	}
	return s
}

// IsLoopback reports whether host (a name or an address, without port)
// refers only to the loopback interface. Names other than "localhost" are
// not resolved: an unknown name counts as not loopback.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// RequireKey returns an error unless key is set or every address (host or
// host:port) is loopback: unencrypted gossip and an unauthenticated
// control service must never face a network.
func RequireKey(key string, addrs ...string) error {
	if key != "" {
		return nil
	}
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host := a
		if h, _, err := net.SplitHostPort(a); err == nil {
			host = h
		}
		if !IsLoopback(host) {
			return fmt.Errorf("cluster: %s is not a loopback address: a cluster key is required (--cluster-key or $%s)", a, KeyEnv)
		}
	}
	return nil
}

// serverCredentials returns the control server's transport credentials:
// TLS with a certificate made from the key's Ed25519 identity, or
// plaintext without a key.
func (s Secrets) serverCredentials() (credentials.TransportCredentials, error) {
	if s.tlsKey == nil {
		return insecure.NewCredentials(), nil
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
		DNSNames:     []string{"macdist"},
	}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, s.tlsKey.Public(), s.tlsKey)
	if err != nil {
		return nil, fmt.Errorf("cluster: control certificate: %w", err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: s.tlsKey}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}), nil
}

// clientCredentials trusts exactly the server identity derived from the
// key: no certificate authority is involved, and a server that does not
// hold the key fails the handshake.
func (s Secrets) clientCredentials() credentials.TransportCredentials {
	if s.tlsKey == nil {
		return insecure.NewCredentials()
	}
	want := s.tlsKey.Public().(ed25519.PublicKey)
	return credentials.NewTLS(&tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // replaced by the pinned-key check below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("cluster: control server sent no certificate")
			}
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("cluster: control server certificate: %w", err)
			}
			pub, ok := c.PublicKey.(ed25519.PublicKey)
			if !ok || !pub.Equal(want) {
				return errors.New("cluster: control server does not hold this cluster key")
			}
			return nil
		},
	})
}

// tokenCreds attaches the token to every RPC.
type tokenCreds struct {
	token  string
	secure bool
}

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + t.token}, nil
}

func (t tokenCreds) RequireTransportSecurity() bool { return t.secure }

// DialOptions are the options a control client needs: the transport
// credentials and the token.
func (s Secrets) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(s.clientCredentials()),
		grpc.WithPerRPCCredentials(tokenCreds{token: s.Token, secure: s.tlsKey != nil}),
	}
}

// ServerOptions are the options the control server needs: the transport
// credentials and interceptors that refuse any call without the token.
func (s Secrets) ServerOptions() ([]grpc.ServerOption, error) {
	creds, err := s.serverCredentials()
	if err != nil {
		return nil, err
	}
	return []grpc.ServerOption{
		grpc.Creds(creds),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := s.checkToken(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := s.checkToken(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	}, nil
}

func (s Secrets) checkToken(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		got, ok := strings.CutPrefix(v, "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.Token)) == 1 {
			return nil
		}
	}
	return status.Error(codes.Unauthenticated, "macdist control: missing or wrong token (is --cluster-key the same on every node?)")
}
