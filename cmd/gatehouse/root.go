package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "gatehouse",
		Short:         "An API gateway routed live by service discovery in ZooKeeper or etcd",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newGatewayCmd(), newSidecarCmd(), newEchoCmd(), newDemoCmd(), newServicesCmd())
	return root
}

// settings binds a command's flags, GATEHOUSE_* variables and the --config
// file into one viper instance. Flag "registry-root" is key "registry_root"
// and variable GATEHOUSE_REGISTRY_ROOT; nested keys use "." in files and
// "_" in variables (upstream.dial_timeout, GATEHOUSE_UPSTREAM_DIAL_TIMEOUT).
type settings struct {
	v *viper.Viper
}

func bindSettings(fs *pflag.FlagSet) (*settings, error) {
	v := viper.New()
	v.SetEnvPrefix("GATEHOUSE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_", "-", "_"))
	v.AutomaticEnv()
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" {
			return
		}
		if e := v.BindPFlag(flagKey(f.Name), f); e != nil && err == nil {
			err = e
		}
	})
	if err != nil {
		return nil, err
	}
	path, _ := fs.GetString("config")
	if path == "" {
		path = v.GetString("config")
	}
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	return &settings{v: v}, nil
}

// bindWithLogger binds the settings of a command that has the common flags
// and builds its logger.
func bindWithLogger(fs *pflag.FlagSet) (*settings, *zap.Logger, error) {
	s, err := bindSettings(fs)
	if err != nil {
		return nil, nil, err
	}
	log, err := newLogger(s.v.GetString("log_level"), s.v.GetString("log_format"))
	if err != nil {
		return nil, nil, err
	}
	return s, log, nil
}

func addCommonFlags(fs *pflag.FlagSet) {
	fs.String("config", "", "YAML config file (also GATEHOUSE_CONFIG)")
	fs.String("log-level", "info", "log level: debug, info, warn, error")
	fs.String("log-format", "json", "log format: json or console")
}

func newLogger(level, format string) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	var cfg zap.Config
	switch format {
	case "json", "":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
	default:
		return nil, fmt.Errorf("log format %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	cfg.DisableStacktrace = true
	return cfg.Build()
}

// flagKey maps a flag name to its config key: "registry-root" is
// "registry_root", "upstream-dial-timeout" is "upstream.dial_timeout".
func flagKey(name string) string {
	for _, group := range []string{"embedded", "upstream"} {
		if rest, ok := strings.CutPrefix(name, group+"-"); ok {
			return group + "." + strings.ReplaceAll(rest, "-", "_")
		}
	}
	return strings.ReplaceAll(name, "-", "_")
}
