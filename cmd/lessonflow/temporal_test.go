package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lessonflow/lessonflow/config"
	"github.com/lessonflow/lessonflow/devserver"
	"github.com/lessonflow/lessonflow/internal/testenv"
)

// TestDialTemporalTLS dials a real Temporal dev server through a proxy that
// terminates mutual TLS, as a cluster's frontend would: the client settings
// come from TEMPORAL_TLS_* (and a temporal.toml profile), read through the
// SDK's envconfig. Wrong or missing settings must fail to connect.
func TestDialTemporalTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal dev server")
	}
	srv, err := devserver.Start(context.Background(), devserver.Options{CLI: testenv.TemporalCLI(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	other := newTestCA(t, dir, "other-ca")
	serverCert := ca.issue(t, dir, "server", "temporal.test")
	ca.issue(t, dir, "client", "")
	other.issue(t, dir, "stranger", "")
	addr := tlsProxy(t, serverCert, ca.pool, srv.Address)

	tlsEnv := map[string]string{
		"TEMPORAL_TLS_SERVER_CA_CERT_PATH": filepath.Join(dir, "ca.pem"),
		"TEMPORAL_TLS_CLIENT_CERT_PATH":    filepath.Join(dir, "client.pem"),
		"TEMPORAL_TLS_CLIENT_KEY_PATH":     filepath.Join(dir, "client-key.pem"),
		"TEMPORAL_TLS_SERVER_NAME":         "temporal.test",
	}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range tlsEnv {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	toml := filepath.Join(dir, "temporal.toml")
	if err := os.WriteFile(toml, []byte(`[profile.prod]
address = "`+addr+`"
namespace = "default"
[profile.prod.tls]
server_ca_cert_path = "`+filepath.Join(dir, "ca.pem")+`"
client_cert_path = "`+filepath.Join(dir, "client.pem")+`"
client_key_path = "`+filepath.Join(dir, "client-key.pem")+`"
server_name = "temporal.test"
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		address string // cfg.TemporalAddress (TEMPORAL_ADDRESS or --temporal)
		env     map[string]string
		ok      bool
	}{
		{"mutual TLS", addr, tlsEnv, true},
		{"mutual TLS with an API key", addr, with("TEMPORAL_API_KEY", "lf-test-api-key"), true},
		{"a profile of a temporal.toml", "", map[string]string{"TEMPORAL_CONFIG_FILE": toml, "TEMPORAL_PROFILE": "prod"}, true},
		{"no client certificate", addr, with("TEMPORAL_TLS_CLIENT_CERT_PATH", "", "TEMPORAL_TLS_CLIENT_KEY_PATH", ""), false},
		{"a client certificate of another CA", addr, with("TEMPORAL_TLS_CLIENT_CERT_PATH", filepath.Join(dir, "stranger.pem"),
			"TEMPORAL_TLS_CLIENT_KEY_PATH", filepath.Join(dir, "stranger-key.pem")), false},
		{"a server it does not trust", addr, with("TEMPORAL_TLS_SERVER_CA_CERT_PATH", filepath.Join(dir, "other-ca.pem")), false},
		{"the wrong server name", addr, with("TEMPORAL_TLS_SERVER_NAME", "elsewhere.test"), false},
		{"no TLS at all", addr, map[string]string{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_API_KEY", "TEMPORAL_CONFIG_FILE", "TEMPORAL_PROFILE",
				"TEMPORAL_TLS", "TEMPORAL_TLS_SERVER_CA_CERT_PATH", "TEMPORAL_TLS_CLIENT_CERT_PATH", "TEMPORAL_TLS_CLIENT_KEY_PATH", "TEMPORAL_TLS_SERVER_NAME"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			cfg := config.Config{TemporalAddress: c.address, TemporalNamespace: "default"}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cl, err := dialTemporal(ctx, cfg)
			if err == nil {
				_, err = cl.CheckHealth(ctx, nil)
				cl.Close()
			}
			if c.ok && err != nil {
				t.Fatalf("want a connection, got %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("connected")
			}
			if err != nil {
				t.Logf("refused as it should be: %.200v", err)
			}
		})
	}
	t.Run("settings", func(t *testing.T) {
		t.Setenv("TEMPORAL_API_KEY", "lf-test-api-key")
		t.Setenv("TEMPORAL_NAMESPACE", "lessons")
		opts, err := temporalClientOptions(config.Config{TemporalNamespace: "lessons"})
		if err != nil || opts.Credentials == nil || opts.HostPort != localTemporal || opts.Namespace != "lessons" {
			t.Fatalf("%+v %v", opts, err)
		}
		t.Setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", filepath.Join(dir, "missing.pem"))
		if _, err := temporalClientOptions(config.Config{}); err == nil || !strings.Contains(err.Error(), "TEMPORAL_TLS") {
			t.Fatalf("a client certificate without its key: %v", err)
		}
	})
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

// newTestCA makes a self-signed CA and writes <name>.pem.
func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue signs a leaf certificate (a server's for host, else a client's) and
// writes <name>.pem and <name>-key.pem.
func (ca *testCA) issue(t *testing.T, dir, name, host string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if host != "" {
		tmpl.DNSNames, tmpl.ExtKeyUsage = []string{host}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, filepath.Join(dir, name+".pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(dir, name+"-key.pem"), "EC PRIVATE KEY", kder)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsProxy listens with TLS that requires a client certificate of clients
// and forwards each connection's plaintext to target: a frontend behind
// mutual TLS.
func tlsProxy(t *testing.T, cert tls.Certificate, clients *x509.CertPool, target string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: clients,
		ClientAuth: tls.RequireAndVerifyClientCert, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if err := conn.(*tls.Conn).Handshake(); err != nil {
					return
				}
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, conn)
				io.Copy(conn, up)
			}()
		}
	}()
	return ln.Addr().String()
}
