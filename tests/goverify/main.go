// Command goverify is a test oracle: it verifies a leaf certificate with Go's crypto/x509, which
// enforces every name constraint form (DNS, IP, email, URI) on the whole chain, and prints the result.
//
// Usage: go run ./tests/goverify ROOTS.pem INTERMEDIATES.pem LEAF.pem
// Exit status 0 with "ok" when the chain verifies; 1 with Go's error when it does not; 2 on bad input.
package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

func load(path string) []*x509.Certificate {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read:", err)
		os.Exit(2)
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			// A certificate Go cannot parse cannot be part of a chain Go accepts.
			fmt.Println("parse:", err)
			os.Exit(1)
		}
		certs = append(certs, cert)
	}
	return certs
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: goverify ROOTS.pem INTERMEDIATES.pem LEAF.pem")
		os.Exit(2)
	}
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range load(os.Args[1]) {
		roots.AddCert(c)
	}
	for _, c := range load(os.Args[2]) {
		intermediates.AddCert(c)
	}
	leaves := load(os.Args[3])
	if len(leaves) == 0 {
		fmt.Fprintln(os.Stderr, "no leaf certificate")
		os.Exit(2)
	}
	_, err := leaves[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		fmt.Println("refused:", err)
		os.Exit(1)
	}
	fmt.Println("ok")
}
