package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-viper/mapstructure/v2"

	"github.com/gatehouse/gatehouse/gateway"
	"github.com/gatehouse/gatehouse/internal/regurl"
	"github.com/gatehouse/gatehouse/registry"
)

// gatewayConfig is the gateway's whole configuration, as flags, variables
// and the YAML file give it.
type gatewayConfig struct {
	Listen            string                      `mapstructure:"listen"`
	Admin             string                      `mapstructure:"admin"`
	Registry          string                      `mapstructure:"registry"`
	RegistryRoot      string                      `mapstructure:"registry_root"`
	RegistryTTL       time.Duration               `mapstructure:"registry_ttl"`
	Embedded          embeddedConfig              `mapstructure:"embedded"`
	LogLevel          string                      `mapstructure:"log_level"`
	LogFormat         string                      `mapstructure:"log_format"`
	AccessLog         bool                        `mapstructure:"access_log"`
	DiscoveryRoutes   bool                        `mapstructure:"discovery_routes"`
	DefaultPolicy     string                      `mapstructure:"default_policy"`
	TrustedProxies    []string                    `mapstructure:"trusted_proxies"`
	Upstream          upstreamConfig              `mapstructure:"upstream"`
	ShutdownTimeout   time.Duration               `mapstructure:"shutdown_timeout"`
	ShutdownDelay     time.Duration               `mapstructure:"shutdown_delay"`
	GatewaysRoot      string                      `mapstructure:"gateways_root"`
	AdvertiseAdmin    string                      `mapstructure:"advertise_admin"`
	SnapshotFile      string                      `mapstructure:"snapshot_file"`
	MaxStaleness      time.Duration               `mapstructure:"max_staleness"`
	PanicFloor        float64                     `mapstructure:"panic_floor"`
	PanicConfirmDelay time.Duration               `mapstructure:"panic_confirm_delay"`
	Server            string                      `mapstructure:"server"`
	Engine            string                      `mapstructure:"engine"`
	Routes            []gateway.RouteConfig       `mapstructure:"routes"`
	Retry             gateway.RetryConfig         `mapstructure:"retry"`
	RetryBudget       gateway.RetryBudget         `mapstructure:"retry_budget"`
	HealthChecks      []gateway.HealthCheckConfig `mapstructure:"health_checks"`
	PassiveHealth     gateway.PassiveHealthConfig `mapstructure:"passive_health"`
	Extra             map[string]interface{}      `mapstructure:",remain"`
}

type embeddedConfig struct {
	ClientAddr string `mapstructure:"client_addr"`
	PeerAddr   string `mapstructure:"peer_addr"`
	// Dir holds the embedded registry's data; "" is a fresh temporary
	// directory, since it holds only ephemeral records.
	Dir string `mapstructure:"dir"`
}

type upstreamConfig struct {
	DialTimeout           time.Duration `mapstructure:"dial_timeout"`
	ResponseHeaderTimeout time.Duration `mapstructure:"response_header_timeout"`
	IdleConnTimeout       time.Duration `mapstructure:"idle_conn_timeout"`
	MaxIdleConnsPerHost   int           `mapstructure:"max_idle_conns_per_host"`
}

// loadGatewayConfig decodes and validates; every problem is reported.
func loadGatewayConfig(s *settings) (gatewayConfig, error) {
	var c gatewayConfig
	hook := mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)
	if err := s.v.Unmarshal(&c, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = hook
		dc.ErrorUnused = true
	}); err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	return c, c.validate()
}

func (c gatewayConfig) validate() error {
	var errs []error
	if len(c.Extra) > 0 {
		for k := range c.Extra {
			errs = append(errs, fmt.Errorf("unknown setting %q", k))
		}
	}
	if _, err := regurl.Parse(c.Registry); err != nil {
		errs = append(errs, err)
	}
	if _, err := registry.NewLayout(c.RegistryRoot); err != nil {
		errs = append(errs, err)
	}
	if _, err := registry.NewLayout(c.GatewaysRoot); err != nil {
		errs = append(errs, fmt.Errorf("gateways_root: %w", err))
	} else if c.GatewaysRoot == c.RegistryRoot || c.GatewaysRoot == "" {
		errs = append(errs, errors.New("gateways_root must differ from registry_root"))
	}
	if c.Listen == "" {
		errs = append(errs, errors.New("listen: empty"))
	}
	if c.PanicFloor >= 1 {
		errs = append(errs, errors.New("panic_floor: must be below 1 (negative turns it off)"))
	}
	if c.MaxStaleness < 0 || c.PanicConfirmDelay < 0 {
		errs = append(errs, errors.New("max_staleness, panic_confirm_delay: negative"))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("shutdown_timeout: negative"))
	}
	if err := c.gateway().Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid config: %w", errors.Join(errs...))
	}
	return nil
}

func (c gatewayConfig) gateway() gateway.Config {
	return gateway.Config{
		Routes:                c.Routes,
		DiscoveryRoutes:       c.DiscoveryRoutes,
		DefaultPolicy:         c.DefaultPolicy,
		TrustedProxies:        c.TrustedProxies,
		DialTimeout:           c.Upstream.DialTimeout,
		ResponseHeaderTimeout: c.Upstream.ResponseHeaderTimeout,
		IdleConnTimeout:       c.Upstream.IdleConnTimeout,
		MaxIdleConnsPerHost:   c.Upstream.MaxIdleConnsPerHost,
		AccessLog:             c.AccessLog,
		Server:                c.Server,
		Engine:                c.Engine,
		Retry:                 c.Retry,
		RetryBudget:           c.RetryBudget,
		HealthChecks:          c.HealthChecks,
		PassiveHealth:         c.PassiveHealth,
	}
}
