package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/gatehouse/gatehouse/internal/regurl"
	"github.com/gatehouse/gatehouse/registry"
)

func newServicesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "services",
		Short: "List services and instances as the registry holds them",
		Args:  cobra.NoArgs,
	}
	fs := cmd.Flags()
	fs.String("registry", "etcd://127.0.0.1:2379", "registry URL")
	fs.String("registry-root", registry.DefaultRoot, "registry path under which services live")
	fs.String("output", "table", "table or json")
	fs.Duration("timeout", 10*time.Second, "how long to wait for the registry")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		s, err := bindSettings(fs)
		if err != nil {
			return err
		}
		spec, err := regurl.Parse(s.v.GetString("registry"))
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.v.GetDuration("timeout"))
		defer cancel()
		b, err := regurl.Open(ctx, spec, regurl.Options{Root: s.v.GetString("registry_root"), Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer b.Close()
		w := b.Watcher()
		defer w.Close()
		batch, err := w.Next(ctx)
		if err != nil {
			return fmt.Errorf("read registry: %w", err)
		}
		for _, e := range batch.Skipped {
			fmt.Fprintln(os.Stderr, "skipped malformed record:", e)
		}
		return printServices(batch.Services, s.v.GetString("output"))
	}
	return cmd
}

func printServices(svcs map[string][]registry.Instance, format string) error {
	names := make([]string, 0, len(svcs))
	for n, ins := range svcs {
		registry.SortByID(ins)
		if len(ins) > 0 {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if format == "json" {
		out := make(map[string][]registry.Instance, len(names))
		for _, n := range names {
			out[n] = svcs[n]
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tID\tADDRESS\tWEIGHT\tMETADATA")
	for _, n := range names {
		for _, in := range svcs[n] {
			var meta []string
			for k, v := range in.Metadata {
				meta = append(meta, k+"="+v)
			}
			sort.Strings(meta)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", n, in.ID, in.Address, in.EffectiveWeight(), strings.Join(meta, ","))
		}
	}
	return tw.Flush()
}
