package client

import (
	"context"

	v1 "github.com/namirasoft/email-sender/proto/emailsender/v1"
)

// The TemplateService calls (served by ingest). Reads, renders and
// publications are retried; creations, updates (each adds a version) and
// deletions are not retried after an answer that leaves open whether the
// server acted.

// CreateTemplate stores a template with its first version, a draft.
func (c *Client) CreateTemplate(ctx context.Context, req *v1.CreateTemplateRequest) (*v1.CreateTemplateResponse, error) {
	return call(ctx, c, "CreateTemplate", once, func(ctx context.Context) (*v1.CreateTemplateResponse, error) {
		return c.tmpl.CreateTemplate(ctx, req)
	})
}

// GetTemplate returns a template with a version (0: the published one,
// else the latest).
func (c *Client) GetTemplate(ctx context.Context, template string, version int32) (*v1.GetTemplateResponse, error) {
	return call(ctx, c, "GetTemplate", idempotent, func(ctx context.Context) (*v1.GetTemplateResponse, error) {
		return c.tmpl.GetTemplate(ctx, &v1.GetTemplateRequest{Template: template, Version: version})
	})
}

// ListTemplates lists one page of the account's templates.
func (c *Client) ListTemplates(ctx context.Context, req *v1.ListTemplatesRequest) (*v1.ListTemplatesResponse, error) {
	return call(ctx, c, "ListTemplates", idempotent, func(ctx context.Context) (*v1.ListTemplatesResponse, error) {
		return c.tmpl.ListTemplates(ctx, req)
	})
}

// UpdateTemplate adds a draft version.
func (c *Client) UpdateTemplate(ctx context.Context, req *v1.UpdateTemplateRequest) (*v1.UpdateTemplateResponse, error) {
	return call(ctx, c, "UpdateTemplate", once, func(ctx context.Context) (*v1.UpdateTemplateResponse, error) {
		return c.tmpl.UpdateTemplate(ctx, req)
	})
}

// PublishTemplate makes a version (0: the latest) the one sends use.
func (c *Client) PublishTemplate(ctx context.Context, template string, version int32) (*v1.PublishTemplateResponse, error) {
	return call(ctx, c, "PublishTemplate", idempotent, func(ctx context.Context) (*v1.PublishTemplateResponse, error) {
		return c.tmpl.PublishTemplate(ctx, &v1.PublishTemplateRequest{Template: template, Version: version})
	})
}

// DeleteTemplate deletes a template with its versions.
func (c *Client) DeleteTemplate(ctx context.Context, template string) error {
	_, err := call(ctx, c, "DeleteTemplate", once, func(ctx context.Context) (*v1.DeleteTemplateResponse, error) {
		return c.tmpl.DeleteTemplate(ctx, &v1.DeleteTemplateRequest{Template: template})
	})
	return err
}

// RenderTemplate renders a stored version or unsaved content with data.
func (c *Client) RenderTemplate(ctx context.Context, req *v1.RenderTemplateRequest) (*v1.RenderTemplateResponse, error) {
	return call(ctx, c, "RenderTemplate", idempotent, func(ctx context.Context) (*v1.RenderTemplateResponse, error) {
		return c.tmpl.RenderTemplate(ctx, req)
	})
}

// ListTemplateVersions lists a template's versions, newest first.
func (c *Client) ListTemplateVersions(ctx context.Context, template string) (*v1.ListTemplateVersionsResponse, error) {
	return call(ctx, c, "ListTemplateVersions", idempotent, func(ctx context.Context) (*v1.ListTemplateVersionsResponse, error) {
		return c.tmpl.ListTemplateVersions(ctx, &v1.ListTemplateVersionsRequest{Template: template})
	})
}
