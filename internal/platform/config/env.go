package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Env renders c as the environment variables that produce it, for starting
// a subprocess (a worker) with the same configuration. It is derived from
// the struct tags, so every variable Config reads is here. Secrets are in
// clear: never log the result.
func (c *Config) Env() map[string]string {
	out := map[string]string{}
	walkEnv(reflect.ValueOf(*c), "", func(name string, v reflect.Value) {
		out[name] = envValue(v)
	})
	return out
}

// Variables lists every environment variable Config reads.
func Variables() []string {
	var names []string
	walkEnv(reflect.ValueOf(Config{}), "", func(name string, _ reflect.Value) { names = append(names, name) })
	return names
}

var secretType = reflect.TypeOf(Secret(""))

// walkEnv calls fn with the variable name of every leaf field of v.
func walkEnv(v reflect.Value, prefix string, fn func(name string, v reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("env")
		if !ok {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		name = strings.TrimSpace(name)
		if f.Type.Kind() == reflect.Struct && f.Type != secretType {
			p := ""
			for _, o := range strings.Split(opts, ",") {
				if v, ok := strings.CutPrefix(strings.TrimSpace(o), "prefix="); ok {
					p = v
				}
			}
			walkEnv(v.Field(i), prefix+p, fn)
			continue
		}
		fn(prefix+name, v.Field(i))
	}
}

func envValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case Secret:
		return x.Reveal()
	case time.Duration:
		return x.String()
	case []string:
		return strings.Join(x, ",")
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	panic(fmt.Sprintf("config: no environment form for %s", v.Type()))
}
