package emailsenderv1_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// The public services: every RPC of each must have an HTTP route, and the
// committed OpenAPI document must list it.
var services = []protoreflect.FileDescriptor{
	emailsenderv1.File_emailsender_v1_send_proto,
	emailsenderv1.File_emailsender_v1_report_proto,
	emailsenderv1.File_emailsender_v1_account_proto,
	emailsenderv1.File_emailsender_v1_webhook_proto,
	emailsenderv1.File_emailsender_v1_template_proto,
}

type openAPI struct {
	Swagger string                                 `json:"swagger"`
	Paths   map[string]map[string]openAPIOperation `json:"paths"`
}

type openAPIOperation struct {
	OperationID string `json:"operationId"`
}

var pathParam = regexp.MustCompile(`\{([a-z0-9_]+)\}`)

// jsonPath turns a google.api.http path into the document's form, in which
// path parameters carry their JSON names ({message_id} → {messageId}).
func jsonPath(p string) string {
	return pathParam.ReplaceAllStringFunc(p, func(m string) string {
		parts := strings.Split(strings.Trim(m, "{}"), "_")
		for i := 1; i < len(parts); i++ {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
		return "{" + strings.Join(parts, "") + "}"
	})
}

func bindings(rule *annotations.HttpRule) map[string]string { // verb → path
	out := map[string]string{}
	add := func(r *annotations.HttpRule) {
		switch p := r.GetPattern().(type) {
		case *annotations.HttpRule_Get:
			out["get"] = p.Get
		case *annotations.HttpRule_Post:
			out["post"] = p.Post
		case *annotations.HttpRule_Put:
			out["put"] = p.Put
		case *annotations.HttpRule_Delete:
			out["delete"] = p.Delete
		case *annotations.HttpRule_Patch:
			out["patch"] = p.Patch
		}
	}
	add(rule)
	for _, r := range rule.GetAdditionalBindings() {
		add(r)
	}
	return out
}

func TestOpenAPIDocumentListsEveryRPC(t *testing.T) {
	raw, err := os.ReadFile("../../openapi/emailsender.swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc openAPI
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("the OpenAPI document is not JSON: %v", err)
	}
	if doc.Swagger != "2.0" {
		t.Fatalf("swagger = %q, want 2.0", doc.Swagger)
	}
	n := 0
	for _, file := range services {
		for i := range file.Services().Len() {
			svc := file.Services().Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
				if rule == nil || len(bindings(rule)) == 0 {
					t.Errorf("%s has no google.api.http route", m.FullName())
					continue
				}
				for verb, path := range bindings(rule) {
					op, ok := doc.Paths[jsonPath(path)][verb]
					if !ok {
						t.Errorf("%s: %s %s is not in the OpenAPI document", m.FullName(), strings.ToUpper(verb), jsonPath(path))
						continue
					}
					if !strings.HasPrefix(op.OperationID, string(svc.Name())+"_"+string(m.Name())) {
						t.Errorf("%s %s: operationId %q, want %s_%s", strings.ToUpper(verb), path, op.OperationID, svc.Name(), m.Name())
					}
					n++
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no routes checked")
	}
	ops := 0
	for _, verbs := range doc.Paths {
		ops += len(verbs)
	}
	if ops != n {
		t.Errorf("the document has %d operations, the protos %d routes: regenerate it (make proto)", ops, n)
	}
}
