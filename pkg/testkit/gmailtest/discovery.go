package gmailtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// The discovery document is Google's published description of the Gmail API:
// the one the google.golang.org/api/gmail/v1 client is generated from, shipped
// in that module as gmail/v1/gmail-api.json. It is read from the module
// cache, never copied into this repository, so the contract the fake enforces
// is Google's, at the version of the client the project builds with.
const (
	apiModule     = "google.golang.org/api"
	discoveryFile = "gmail/v1/gmail-api.json"
)

// discoveryDoc is the part of a discovery document the checker reads.
type discoveryDoc struct {
	ID          string                `json:"id"`
	Revision    string                `json:"revision"`
	RootURL     string                `json:"rootUrl"`
	ServicePath string                `json:"servicePath"`
	Parameters  map[string]*dParam    `json:"parameters"`
	Resources   map[string]*dResource `json:"resources"`
	Methods     map[string]*dMethod   `json:"methods"`
	Schemas     map[string]*dSchema   `json:"schemas"`
	Auth        struct {
		OAuth2 struct {
			Scopes map[string]json.RawMessage `json:"scopes"`
		} `json:"oauth2"`
	} `json:"auth"`
}

type dResource struct {
	Methods   map[string]*dMethod   `json:"methods"`
	Resources map[string]*dResource `json:"resources"`
}

type dMethod struct {
	ID                    string             `json:"id"`
	Path                  string             `json:"path"`
	HTTPMethod            string             `json:"httpMethod"`
	Parameters            map[string]*dParam `json:"parameters"`
	Request               *dSchema           `json:"request"`
	Response              *dSchema           `json:"response"`
	Scopes                []string           `json:"scopes"`
	SupportsMediaUpload   bool               `json:"supportsMediaUpload"`
	SupportsMediaDownload bool               `json:"supportsMediaDownload"`
	MediaUpload           *struct {
		Accept    []string `json:"accept"`
		MaxSize   string   `json:"maxSize"`
		Protocols map[string]struct {
			Multipart bool   `json:"multipart"`
			Path      string `json:"path"`
		} `json:"protocols"`
	} `json:"mediaUpload"`
}

type dParam struct {
	Type     string   `json:"type"`
	Format   string   `json:"format"`
	Location string   `json:"location"`
	Required bool     `json:"required"`
	Repeated bool     `json:"repeated"`
	Enum     []string `json:"enum"`
	Pattern  string   `json:"pattern"`
	Minimum  string   `json:"minimum"`
	Maximum  string   `json:"maximum"`
}

type dSchema struct {
	ID                   string              `json:"id"`
	Ref                  string              `json:"$ref"`
	Type                 string              `json:"type"`
	Format               string              `json:"format"`
	Description          string              `json:"description"`
	Enum                 []string            `json:"enum"`
	Properties           map[string]*dSchema `json:"properties"`
	AdditionalProperties *dSchema            `json:"additionalProperties"`
	Items                *dSchema            `json:"items"`
	Annotations          struct {
		Required []string `json:"required"`
	} `json:"annotations"`
}

// Contract is the Gmail API's published contract, read from the discovery
// document of the google.golang.org/api module.
type Contract struct {
	// File is the discovery document read; ModuleVersion the version of
	// google.golang.org/api it belongs to; Found how it was located.
	File, ModuleVersion, Found string
	// Revision is the document's revision, e.g. "20261005".
	Revision string

	doc    *discoveryDoc
	byID   map[string]*dMethod
	routes []route
}

// MethodSpec is what the discovery document says about one method.
type MethodSpec struct {
	ID         string
	HTTPMethod string
	// Path is the template under rootUrl+servicePath, e.g.
	// "gmail/v1/users/{userId}/messages/send".
	Path string
	// Required are the required parameters, e.g. ["userId"].
	Required []string
	// Request and Response name the body schemas ("" for none).
	Request, Response string
	Scopes            []string
	// Upload is set for methods with mediaUpload.
	Upload *UploadSpec
}

// UploadSpec is a method's mediaUpload.
type UploadSpec struct {
	Accept  []string
	MaxSize int64
	// Protocols by name ("simple", "resumable"): the absolute path template
	// and whether multipart (metadata + media) is supported.
	Protocols map[string]ProtocolSpec
}

// ProtocolSpec is one media upload protocol.
type ProtocolSpec struct {
	Path       string
	Multipart  bool
	UploadType []string // the uploadType values the protocol takes
}

var (
	contractOnce sync.Once
	contract     *Contract
	contractErr  error
)

// LoadContract reads the Gmail discovery document of the google.golang.org/api
// module, once per process: the version linked into the running binary (its
// build info) when it has one, else the version `go list -m` resolves in the
// current directory (the workspace, for a package that does not import the
// client), downloading it to the module cache if need be.
func LoadContract() (*Contract, error) {
	contractOnce.Do(func() { contract, contractErr = loadContract() })
	return contract, contractErr
}

func loadContract() (*Contract, error) {
	file, version, found, err := locateDiscovery()
	if err != nil {
		return nil, fmt.Errorf("gmailtest: locate the Gmail discovery document (%s/%s): %w", apiModule, discoveryFile, err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("gmailtest: %w", err)
	}
	var doc discoveryDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("gmailtest: parse %s: %w", file, err)
	}
	if doc.ID != "gmail:v1" {
		return nil, fmt.Errorf("gmailtest: %s is %q, not the gmail:v1 discovery document", file, doc.ID)
	}
	c := &Contract{File: file, ModuleVersion: version, Found: found, Revision: doc.Revision, doc: &doc, byID: map[string]*dMethod{}}
	var walk func(methods map[string]*dMethod, resources map[string]*dResource)
	walk = func(methods map[string]*dMethod, resources map[string]*dResource) {
		for _, m := range methods {
			c.byID[m.ID] = m
			c.routes = append(c.routes, newRoute(m, "", "/"+doc.ServicePath+m.Path))
			if m.MediaUpload != nil {
				for name, p := range m.MediaUpload.Protocols {
					c.routes = append(c.routes, newRoute(m, name, p.Path))
				}
			}
		}
		for _, r := range resources {
			walk(r.Methods, r.Resources)
		}
	}
	walk(doc.Methods, doc.Resources)
	if len(c.byID) == 0 {
		return nil, fmt.Errorf("gmailtest: %s describes no methods", file)
	}
	sort.Slice(c.routes, func(i, j int) bool { return c.routes[i].template < c.routes[j].template })
	return c, nil
}

// locateDiscovery finds the discovery document in the module cache.
func locateDiscovery() (file, version, found string, err error) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path != apiModule {
				continue
			}
			m := d
			if d.Replace != nil {
				m = d.Replace
			}
			if m.Version == "" { // a directory replacement: ask go list
				break
			}
			cache, err := goCmd("env", "GOMODCACHE")
			if err != nil {
				break
			}
			f := filepath.Join(strings.TrimSpace(string(cache)), escapeModule(m.Path)+"@"+escapeModule(m.Version), filepath.FromSlash(discoveryFile))
			if _, err := os.Stat(f); err == nil {
				return f, m.Version, "build info of the test binary", nil
			}
		}
	}
	var mod struct{ Version, Dir string }
	out, err := goCmd("list", "-m", "-json", apiModule)
	if err != nil {
		return "", "", "", err
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", "", "", fmt.Errorf("go list -m -json %s: %w", apiModule, err)
	}
	found = "go list -m " + apiModule
	if mod.Dir == "" && mod.Version != "" {
		out, err := goCmd("mod", "download", "-json", apiModule+"@"+mod.Version)
		if err != nil {
			return "", "", "", err
		}
		if err := json.Unmarshal(out, &mod); err != nil {
			return "", "", "", fmt.Errorf("go mod download -json: %w", err)
		}
		found = "go mod download " + apiModule + "@" + mod.Version
	}
	if mod.Dir == "" {
		return "", "", "", fmt.Errorf("%s has no module directory", apiModule)
	}
	f := filepath.Join(mod.Dir, filepath.FromSlash(discoveryFile))
	if _, err := os.Stat(f); err != nil {
		return "", "", "", err
	}
	return f, mod.Version, found, nil
}

// goCmd runs the go command (the one `go test` put first on PATH).
func goCmd(args ...string) ([]byte, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		if root := os.Getenv("GOROOT"); root != "" {
			gobin = filepath.Join(root, "bin", "go")
		} else {
			return nil, errors.New("the go command is not on PATH")
		}
	}
	cmd := exec.Command(gobin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// escapeModule is the module cache's case encoding of a path or version.
func escapeModule(s string) string {
	var b strings.Builder
	for _, r := range s {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Method returns what the document says about the method id, e.g.
// "gmail.users.messages.send".
func (c *Contract) Method(id string) (MethodSpec, bool) {
	m := c.byID[id]
	if m == nil {
		return MethodSpec{}, false
	}
	s := MethodSpec{ID: m.ID, HTTPMethod: m.HTTPMethod, Path: m.Path, Scopes: slices.Clone(m.Scopes)}
	for name, p := range m.Parameters {
		if p.Required {
			s.Required = append(s.Required, name)
		}
	}
	sort.Strings(s.Required)
	if m.Request != nil {
		s.Request = m.Request.Ref
	}
	if m.Response != nil {
		s.Response = m.Response.Ref
	}
	if mu := m.MediaUpload; mu != nil {
		max, _ := strconv.ParseInt(mu.MaxSize, 10, 64)
		s.Upload = &UploadSpec{Accept: slices.Clone(mu.Accept), MaxSize: max, Protocols: map[string]ProtocolSpec{}}
		for name, p := range mu.Protocols {
			s.Upload.Protocols[name] = ProtocolSpec{Path: p.Path, Multipart: p.Multipart, UploadType: uploadTypes(name, p.Multipart)}
		}
	}
	return s, true
}

// Scopes are the OAuth 2.0 scopes the document defines.
func (c *Contract) Scopes() []string {
	var out []string
	for s := range c.doc.Auth.OAuth2.Scopes {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// uploadTypes are the uploadType values of a mediaUpload protocol, by the
// discovery format's convention: the simple protocol takes "media" (the body
// is the media) and, when it says multipart, "multipart" (multipart/related:
// the JSON resource, then the media); the resumable protocol "resumable".
func uploadTypes(protocol string, multipart bool) []string {
	switch protocol {
	case "simple":
		if multipart {
			return []string{"media", "multipart"}
		}
		return []string{"media"}
	case "resumable":
		return []string{"resumable"}
	}
	return nil
}

// route is one path template of a method: its own path, or a mediaUpload
// protocol's.
type route struct {
	m        *dMethod
	protocol string // "" or the mediaUpload protocol
	template string // absolute: "/gmail/v1/users/{userId}/messages/send"
	segs     []string
	literals int // literal segments, then literal characters: the more specific template wins
}

func newRoute(m *dMethod, protocol, template string) route {
	r := route{m: m, protocol: protocol, template: template, segs: strings.Split(strings.TrimPrefix(template, "/"), "/")}
	for _, s := range r.segs {
		if !strings.Contains(s, "{") {
			r.literals += 1000
		} else if open, end := strings.IndexByte(s, '{'), strings.IndexByte(s, '}'); end > open {
			r.literals += len(s) - (end - open + 1)
		}
	}
	return r
}

// match matches the escaped request path against the template and returns
// its (unescaped) variables.
func (r route) match(escapedPath string) (map[string]string, bool) {
	segs := strings.Split(strings.TrimPrefix(escapedPath, "/"), "/")
	vars := map[string]string{}
	for i, t := range r.segs {
		if strings.HasPrefix(t, "{+") && strings.HasSuffix(t, "}") { // reserved expansion: the rest
			if i >= len(segs) {
				return nil, false
			}
			vars[t[2:len(t)-1]] = strings.Join(segs[i:], "/")
			return vars, true
		}
		if i >= len(segs) {
			return nil, false
		}
		open, end := strings.IndexByte(t, '{'), strings.IndexByte(t, '}')
		if open < 0 || end < open {
			if segs[i] != t {
				return nil, false
			}
			continue
		}
		prefix, name, suffix := t[:open], t[open+1:end], t[end+1:]
		s := segs[i]
		if len(s) < len(prefix)+len(suffix) || !strings.HasPrefix(s, prefix) || !strings.HasSuffix(s, suffix) {
			return nil, false
		}
		vars[name] = s[len(prefix) : len(s)-len(suffix)]
	}
	if len(segs) != len(r.segs) {
		return nil, false
	}
	return vars, true
}
