package gmailtest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxPlainBody bounds the body of a request that uploads no media.
const maxPlainBody = 64 << 20

// Call is one API request as the contract checker read it.
type Call struct {
	HTTPMethod string
	// Path is the escaped path as received; Query the raw query.
	Path, Query string
	// Method is the discovery method the request was matched to, e.g.
	// "gmail.users.messages.send"; "" when none matched.
	Method string
	// Protocol is the mediaUpload protocol of an upload path ("simple",
	// "resumable"), "" for the method's own path.
	Protocol   string
	UploadType string
	// PathParams are the path template's variables, unescaped.
	PathParams  map[string]string
	AccessToken string
	// Fields are the field names of the JSON request resource (the body, or
	// the metadata part of a multipart upload).
	Fields []string
	// MediaType and MediaSize describe the uploaded media.
	MediaType string
	MediaSize int
	// Violations are the ways the request breaks the discovery document;
	// the fake answered 400 (404 for a path no method has, as Google does;
	// 501 for what the document allows but the fake does not implement,
	// which is listed too).
	Violations []string
	// Status is the HTTP status the fake answered.
	Status int

	resource    map[string]any
	media       []byte
	unsupported bool
	notFound    bool
}

func (c *Call) violate(format string, args ...any) {
	c.Violations = append(c.Violations, fmt.Sprintf(format, args...))
}

// Check reads r (its body too) and checks it against the discovery document:
// the method and path template, the path and query parameters (the method's
// and the standard ones: names, types, enums, required), the credentials,
// the media upload protocol and its uploadType, maxSize and accepted media
// types, and the request body against the method's request schema (field
// names and types; fields outside the schema are refused).
func (c *Contract) Check(r *http.Request) *Call {
	call := &Call{HTTPMethod: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery}
	rt, vars, ok := c.route(call)
	if !ok {
		return call
	}
	m := rt.m
	call.Method, call.Protocol = m.ID, rt.protocol

	call.PathParams = map[string]string{}
	for name, esc := range vars {
		v, err := url.PathUnescape(esc)
		if err != nil {
			call.violate("path parameter %s=%q is not a valid escaped path segment", name, esc)
			continue
		}
		call.PathParams[name] = v
		p := m.Parameters[name]
		if p == nil || p.Location != "path" {
			call.violate("the template's {%s} is not a path parameter of %s in the document", name, m.ID)
			continue
		}
		if v == "" {
			if p.Required {
				call.violate("the required path parameter %s of %s is empty", name, m.ID)
			}
			continue
		}
		if err := checkValue(p, v); err != nil {
			call.violate("path parameter %s=%q: %v", name, v, err)
		}
	}

	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		call.violate("the query does not parse: %v", err)
	}
	c.checkQuery(call, m, q)

	// Credentials: the document's auth is OAuth 2.0 (a Bearer token, or the
	// access_token/oauth_token standard parameters).
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			call.violate("Authorization %q is not an OAuth 2.0 Bearer token", scheme)
		}
		call.AccessToken = strings.TrimSpace(tok)
	} else if at := cmpFirst(q.Get("access_token"), q.Get("oauth_token")); at != "" {
		call.AccessToken = at
	}
	if call.AccessToken == "" && len(m.Scopes) > 0 {
		call.violate("no OAuth 2.0 access token (Authorization: Bearer): %s needs one of the scopes %s", m.ID, strings.Join(m.Scopes, ", "))
	}

	c.checkBody(call, m, r)
	return call
}

func cmpFirst(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// route finds the method of the request's path and HTTP method.
func (c *Contract) route(call *Call) (route, map[string]string, bool) {
	type hit struct {
		r    route
		vars map[string]string
	}
	var hits []hit
	best := -1
	for _, rt := range c.routes {
		if vars, ok := rt.match(call.Path); ok {
			hits = append(hits, hit{rt, vars})
			best = max(best, rt.literals)
		}
	}
	if len(hits) == 0 {
		call.violate("no method of the Gmail API discovery document (revision %s) has the path %s", c.Revision, call.Path)
		call.notFound = true
		return route{}, nil, false
	}
	var others []string
	for _, h := range hits {
		if h.r.literals != best {
			continue
		}
		if h.r.m.HTTPMethod == call.HTTPMethod {
			return h.r, h.vars, true
		}
		others = append(others, h.r.m.HTTPMethod+" ("+h.r.m.ID+")")
	}
	sort.Strings(others)
	call.violate("wrong HTTP method %s; the document has %s for the path %s", call.HTTPMethod, strings.Join(slices.Compact(others), ", "), call.Path)
	return route{}, nil, false
}

// checkQuery checks the query parameters: the method's own (location query)
// and the document's standard parameters.
func (c *Contract) checkQuery(call *Call, m *dMethod, q url.Values) {
	names := make([]string, 0, len(q))
	for n := range q {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		vals := q[name]
		p := m.Parameters[name]
		if p != nil && p.Location != "query" {
			call.violate("%s is a %s parameter of %s, not a query parameter", name, p.Location, m.ID)
			continue
		}
		if p == nil {
			p = c.doc.Parameters[name]
		}
		if p == nil {
			call.violate("unknown query parameter %q: neither a parameter of %s nor a standard parameter", name, m.ID)
			continue
		}
		if len(vals) > 1 && !p.Repeated {
			call.violate("query parameter %s is given %d times; it is not repeated", name, len(vals))
		}
		for _, v := range vals {
			if err := checkValue(p, v); err != nil {
				call.violate("query parameter %s=%q: %v", name, v, err)
			}
		}
	}
	for name, p := range m.Parameters {
		if p.Location == "query" && p.Required && q.Get(name) == "" {
			call.violate("the required query parameter %s of %s is missing", name, m.ID)
		}
	}

	call.UploadType = q.Get("uploadType")
	switch {
	case call.Protocol == "" && q.Has("uploadType"):
		call.violate("uploadType=%s on %s's own path; media is uploaded to the mediaUpload protocol paths", call.UploadType, m.ID)
	case call.Protocol != "":
		allowed := uploadTypes(call.Protocol, m.MediaUpload.Protocols[call.Protocol].Multipart)
		if call.UploadType == "" {
			call.violate("no uploadType on the %s upload path of %s (want one of %s)", call.Protocol, m.ID, strings.Join(allowed, ", "))
		} else if !slices.Contains(allowed, call.UploadType) {
			call.violate("uploadType=%s is not a value of the %s upload protocol of %s (want one of %s)", call.UploadType, call.Protocol, m.ID, strings.Join(allowed, ", "))
		}
	}
	switch alt := q.Get("alt"); alt {
	case "media":
		if !m.SupportsMediaDownload {
			call.violate("alt=media: %s does not support media download", m.ID)
		}
	case "proto":
		call.violate("alt=proto: allowed by the document, but gmailtest answers JSON only")
		call.unsupported = true
	}
}

// checkValue checks a parameter value against its declaration.
func checkValue(p *dParam, v string) error {
	if len(p.Enum) > 0 && !slices.Contains(p.Enum, v) {
		return fmt.Errorf("not one of %s", strings.Join(p.Enum, ", "))
	}
	switch p.Type {
	case "boolean":
		if v != "true" && v != "false" {
			return errors.New("not a boolean (true or false)")
		}
	case "integer":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return errors.New("not an integer")
		}
		if err := intRange(p.Format, n); err != nil {
			return err
		}
		if p.Minimum != "" {
			if lo, err := strconv.ParseInt(p.Minimum, 10, 64); err == nil && n < lo {
				return fmt.Errorf("below the minimum %s", p.Minimum)
			}
		}
		if p.Maximum != "" {
			if hi, err := strconv.ParseInt(p.Maximum, 10, 64); err == nil && n > hi {
				return fmt.Errorf("above the maximum %s", p.Maximum)
			}
		}
	case "number":
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return errors.New("not a number")
		}
	case "string":
		if err := stringFormat(p.Format, v); err != nil {
			return err
		}
	}
	if p.Pattern != "" {
		re, err := regexp.Compile(p.Pattern)
		if err == nil && !re.MatchString(v) {
			return fmt.Errorf("does not match the pattern %s", p.Pattern)
		}
	}
	return nil
}

func intRange(format string, n int64) error {
	switch format {
	case "int32":
		if n < math.MinInt32 || n > math.MaxInt32 {
			return errors.New("out of the int32 range")
		}
	case "uint32":
		if n < 0 || n > math.MaxUint32 {
			return errors.New("out of the uint32 range")
		}
	}
	return nil
}

// stringFormat checks the formats of string values (not "byte", see
// decodeBytes).
func stringFormat(format, v string) error {
	switch format {
	case "int64":
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return errors.New("not an int64 in decimal")
		}
	case "uint64":
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return errors.New("not a uint64 in decimal")
		}
	case "google-datetime", "date-time":
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			return errors.New("not an RFC 3339 date-time")
		}
	case "date":
		if _, err := time.Parse(time.DateOnly, v); err != nil {
			return errors.New("not a date (YYYY-MM-DD)")
		}
	}
	return nil
}

// decodeBytes decodes a value of format "byte": base64 with or without
// padding; urlOnly (the field says base64url) refuses the standard alphabet.
func decodeBytes(s string, urlOnly bool) ([]byte, error) {
	t := strings.TrimRight(s, "=")
	if pad := len(s) - len(t); pad > 2 || (pad > 0 && len(s)%4 != 0) {
		return nil, errors.New("bad base64 padding")
	}
	std := false
	for i := 0; i < len(t); i++ {
		switch ch := t[i]; {
		case 'A' <= ch && ch <= 'Z', 'a' <= ch && ch <= 'z', '0' <= ch && ch <= '9', ch == '-', ch == '_':
		case ch == '+' || ch == '/':
			if urlOnly {
				return nil, fmt.Errorf("not base64url: %q at offset %d is of the standard base64 alphabet", ch, i)
			}
			std = true
		default:
			return nil, fmt.Errorf("not base64: %q at offset %d", ch, i)
		}
	}
	enc := base64.RawURLEncoding
	if std {
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(t)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	return b, nil
}

func isBase64URLField(s *dSchema) bool {
	return strings.Contains(strings.ToLower(s.Description), "base64url")
}

// checkBody checks the request body: the request schema's JSON resource, or
// the media of an upload protocol.
func (c *Contract) checkBody(call *Call, m *dMethod, r *http.Request) {
	limit := int64(maxPlainBody)
	var maxSize int64
	if call.Protocol != "" {
		maxSize, _ = strconv.ParseInt(m.MediaUpload.MaxSize, 10, 64)
		if maxSize > 0 {
			limit = maxSize + 1<<20 // room for the metadata and multipart framing
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		call.violate("reading the body: %v", err)
		return
	}
	if int64(len(body)) > limit {
		call.violate("the body is larger than %d bytes", limit)
		return
	}
	ct := r.Header.Get("Content-Type")
	mt, params, ctErr := mime.ParseMediaType(ct)

	if call.Protocol == "" {
		if m.Request == nil {
			if len(body) > 0 {
				call.violate("%s takes no request body; got %d bytes", m.ID, len(body))
			}
			return
		}
		if ctErr != nil || mt != "application/json" {
			call.violate("Content-Type %q: the %s resource of %s is sent as application/json", ct, m.Request.Ref, m.ID)
			return
		}
		call.resource = c.checkResource(call, m, body, "the body", true)
		return
	}

	if call.Protocol == "resumable" {
		call.violate("the resumable upload protocol is in the document, but gmailtest does not implement it")
		call.unsupported = true
		return
	}
	var media []byte
	switch call.UploadType {
	case "media":
		media = body
		call.MediaType = ct
	case "multipart":
		if ctErr != nil || mt != "multipart/related" || params["boundary"] == "" {
			call.violate("Content-Type %q: uploadType=multipart is multipart/related with a boundary", ct)
			return
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		meta, err := mr.NextRawPart()
		if err != nil {
			call.violate("multipart upload: the metadata part: %v", err)
			return
		}
		pmt, _, err := mime.ParseMediaType(meta.Header.Get("Content-Type"))
		if err != nil || pmt != "application/json" {
			call.violate("multipart upload: the first part is %q, not the application/json %s resource", meta.Header.Get("Content-Type"), m.Request.Ref)
			return
		}
		mb, err := io.ReadAll(meta)
		if err != nil {
			call.violate("multipart upload: the metadata part: %v", err)
			return
		}
		if m.Request != nil {
			call.resource = c.checkResource(call, m, mb, "the metadata part", false)
		}
		part, err := mr.NextRawPart()
		if err != nil {
			call.violate("multipart upload: the media part: %v", err)
			return
		}
		if media, err = io.ReadAll(part); err != nil {
			call.violate("multipart upload: the media part: %v", err)
			return
		}
		call.MediaType = part.Header.Get("Content-Type")
		switch _, err := mr.NextRawPart(); {
		case err == nil:
			call.violate("multipart upload: want two parts (metadata, media), got a third")
		case err != io.EOF:
			call.violate("multipart upload: after the media part: %v", err)
		}
	default:
		return // uploadType already reported
	}
	call.media, call.MediaSize = media, len(media)
	if maxSize > 0 && int64(len(media)) > maxSize {
		call.violate("%d bytes of media is over the mediaUpload maxSize %d of %s", len(media), maxSize, m.ID)
	}
	if !accepted(call.MediaType, m.MediaUpload.Accept) {
		call.violate("media Content-Type %q is not in the mediaUpload accept list %s of %s", call.MediaType, strings.Join(m.MediaUpload.Accept, ", "), m.ID)
	}
}

// checkResource decodes a JSON resource and checks it against the method's
// request schema; required applies the fields' annotations.required.
func (c *Contract) checkResource(call *Call, m *dMethod, b []byte, where string, required bool) map[string]any {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		call.violate("%s is not JSON: %v", where, err)
		return nil
	}
	if _, err := dec.Token(); err != io.EOF {
		call.violate("%s has data after the JSON value", where)
	}
	var vs []string
	c.validate(v, m.Request, m.Request.Ref, m.ID, required, &vs)
	for _, s := range vs {
		call.violate("%s: %s", where, s)
	}
	obj, _ := v.(map[string]any)
	for k := range obj {
		call.Fields = append(call.Fields, k)
	}
	sort.Strings(call.Fields)
	return obj
}

// CheckResponse checks a JSON answer of the method against its response
// schema: the fake's own answers are held to the document too.
func (c *Contract) CheckResponse(methodID string, body []byte) []string {
	m := c.byID[methodID]
	if m == nil || m.Response == nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return []string{"the answer is not JSON: " + err.Error()}
	}
	var vs []string
	c.validate(v, m.Response, m.Response.Ref, "", false, &vs)
	return vs
}

// validate checks a decoded JSON value against a schema.
func (c *Contract) validate(v any, s *dSchema, where, methodID string, required bool, out *[]string) {
	bad := func(format string, args ...any) { *out = append(*out, where+": "+fmt.Sprintf(format, args...)) }
	if s.Ref != "" {
		r := c.doc.Schemas[s.Ref]
		if r == nil {
			bad("the document has no schema %q", s.Ref)
			return
		}
		s = r
	}
	if v == nil { // JSON null: the field's default
		return
	}
	switch s.Type {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			bad("want a JSON object, got %s", jsonKind(v))
			return
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps := s.Properties[k]
			if ps == nil {
				ps = s.AdditionalProperties
			}
			if ps == nil {
				known := make([]string, 0, len(s.Properties))
				for p := range s.Properties {
					known = append(known, p)
				}
				sort.Strings(known)
				bad("unknown field %q: the %s schema has %s", k, cmpFirst(s.ID, "object"), strings.Join(known, ", "))
				continue
			}
			c.validate(obj[k], ps, where+"."+k, methodID, required, out)
		}
		if required && methodID != "" {
			for name, ps := range s.Properties {
				if slices.Contains(ps.Annotations.Required, methodID) && (obj[name] == nil || obj[name] == "") {
					bad("field %q is required by %s (annotations.required)", name, methodID)
				}
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("want a JSON string, got %s", jsonKind(v))
			return
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, str) {
			bad("%q is not one of %s", str, strings.Join(s.Enum, ", "))
		}
		if s.Format == "byte" {
			if _, err := decodeBytes(str, isBase64URLField(s)); err != nil {
				bad("format byte: %v", err)
			}
		} else if err := stringFormat(s.Format, str); err != nil {
			bad("format %s: %v", s.Format, err)
		}
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			bad("want a JSON number, got %s", jsonKind(v))
			return
		}
		i, err := n.Int64()
		if err != nil {
			bad("%s is not an integer", n)
			return
		}
		if err := intRange(s.Format, i); err != nil {
			bad("%s is %v", n, err)
		}
	case "number":
		if _, ok := v.(json.Number); !ok {
			bad("want a JSON number, got %s", jsonKind(v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("want a JSON boolean, got %s", jsonKind(v))
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			bad("want a JSON array, got %s", jsonKind(v))
			return
		}
		if s.Items != nil {
			for i, e := range arr {
				c.validate(e, s.Items, fmt.Sprintf("%s[%d]", where, i), methodID, required, out)
			}
		}
	case "any", "":
	default:
		bad("the document's type %q is unknown to gmailtest", s.Type)
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// accepted reports whether the media type ct matches an accept pattern
// ("message/*", "*/*", or a full type).
func accepted(ct string, accept []string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	for _, a := range accept {
		a = strings.ToLower(a)
		if a == "*/*" || a == mt {
			return true
		}
		if prefix, ok := strings.CutSuffix(a, "/*"); ok && strings.HasPrefix(mt, prefix+"/") {
			return true
		}
	}
	return false
}
