package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// mintToken implements "floodgate token": it signs an HS256 admin-API token with the shared secret (from
// --secret-file, or FLOODGATE_AUTH_HS256_SECRET / _FILE like the server) and prints it. For the shared-secret
// setup; with an OIDC provider, tokens come from the provider.
func mintToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("floodgate token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "the token's subject (who is acting; shown in the audit trail)")
	role := fs.String("role", "viewer", "viewer or admin")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token")
	secretFile := fs.String("secret-file", getenv(envName("auth-hs256-secret-file")), "file holding the HS256 secret (default $FLOODGATE_AUTH_HS256_SECRET_FILE, else $FLOODGATE_AUTH_HS256_SECRET)")
	iss := fs.String("iss", getenv(envName("auth-issuer")), "iss claim (when the server checks one)")
	aud := fs.String("aud", "", "aud claim (when the server checks one)")
	claim := fs.String("role-claim", "roles", "claim holding the role (the server's --auth-role-claim)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: floodgate token --sub NAME [--role viewer|admin] [--ttl 1h]   prints an HS256 bearer token")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	secret := getenv(envName("auth-hs256-secret"))
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("--secret-file: %w", err)
		}
		secret = strings.TrimRight(string(b), "\r\n")
	}
	switch {
	case secret == "":
		return errors.New("token: no secret: set FLOODGATE_AUTH_HS256_SECRET or pass --secret-file")
	case len(secret) < 32:
		return errors.New("token: the secret is shorter than 32 bytes")
	case *sub == "":
		return errors.New("token: --sub is required (it names the actor in the audit trail)")
	case *role != "viewer" && *role != "admin":
		return fmt.Errorf("token: --role %q is not viewer or admin", *role)
	case *ttl <= 0:
		return errors.New("token: --ttl must be positive")
	}
	now := time.Now()
	c := jwt.MapClaims{"sub": *sub, "iat": now.Unix(), "exp": now.Add(*ttl).Unix(), *claim: []string{*role}}
	if *iss != "" {
		c["iss"] = *iss
	}
	if *aud != "" {
		c["aud"] = *aud
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(secret))
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
