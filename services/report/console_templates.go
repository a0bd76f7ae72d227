package report

import (
	"context"

	emailsenderv1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
	"github.com/namirasoft/email-sender/services/report/console"
)

// The TemplateService calls of the console's templates pages
// (console.TemplateIngest), with the session's credential.

func (i *consoleIngest) ListTemplates(ctx context.Context, req *emailsenderv1.ListTemplatesRequest) (*emailsenderv1.ListTemplatesResponse, error) {
	return i.c.ListTemplates(ctx, req)
}

func (i *consoleIngest) GetTemplate(ctx context.Context, template string, version int32) (*emailsenderv1.GetTemplateResponse, error) {
	return i.c.GetTemplate(ctx, template, version)
}

func (i *consoleIngest) ListTemplateVersions(ctx context.Context, template string) (*emailsenderv1.ListTemplateVersionsResponse, error) {
	return i.c.ListTemplateVersions(ctx, template)
}

func (i *consoleIngest) UpdateTemplate(ctx context.Context, req *emailsenderv1.UpdateTemplateRequest) (*emailsenderv1.UpdateTemplateResponse, error) {
	return i.c.UpdateTemplate(ctx, req)
}

func (i *consoleIngest) PublishTemplate(ctx context.Context, template string, version int32) (*emailsenderv1.PublishTemplateResponse, error) {
	return i.c.PublishTemplate(ctx, template, version)
}

func (i *consoleIngest) RenderTemplate(ctx context.Context, req *emailsenderv1.RenderTemplateRequest) (*emailsenderv1.RenderTemplateResponse, error) {
	return i.c.RenderTemplate(ctx, req)
}

var _ console.TemplateIngest = (*consoleIngest)(nil)
