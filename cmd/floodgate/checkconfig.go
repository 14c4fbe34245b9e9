package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/floodgate/floodgate/config"
)

// checkConfig validates a limits file or directory: it prints one line per problem (file:line: field: reason)
// and returns errUsage, or prints a summary and returns nil.
func checkConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "usage: floodgate check-config PATH   (a limits YAML file or a directory of them)")
		return errUsage
	}
	s, err := config.Load(args[0])
	if err != nil {
		var list config.Errors
		if errors.As(err, &list) {
			for _, e := range list {
				fmt.Fprintln(stderr, e)
			}
			fmt.Fprintf(stderr, "%s: %d error(s); nothing would be loaded\n", args[0], len(list))
		} else {
			fmt.Fprintf(stderr, "%s: %v\n", args[0], err)
		}
		return errUsage
	}
	info := s.Info()
	fmt.Fprintf(stdout, "%s: OK: %d domain(s) %s from %d file(s)\n", args[0], len(s.Domains()),
		strings.Join(s.Domains(), ", "), len(info.Sources))
	return nil
}
