package store_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/namirasoft/email-sender/pkg/mailtemplate"
	"github.com/namirasoft/email-sender/services/ingest/store"
)

func TestTemplateVersionsAndPublishing(t *testing.T) {
	b := setupAccept(t)
	ctx, db := t.Context(), b.db.Pool
	a, other := b.accounts[0], b.accounts[1]
	now := time.Now().UTC().Truncate(time.Microsecond)

	v1 := store.TemplateContent{Subject: "Hi {{name}}", HTML: "<p>v1</p>", Variables: []mailtemplate.Variable{{Name: "name", Type: "string", Required: true}}, Partials: map[string]string{"f": "x"}}
	tpl, err := store.CreateTemplate(ctx, db, a, "welcome", "Welcome", v1, now)
	require.NoError(t, err)
	_, err = store.CreateTemplate(ctx, db, a, "welcome", "", v1, now)
	require.ErrorIs(t, err, store.ErrAliasTaken)
	_, err = store.CreateTemplate(ctx, db, other, "welcome", "", v1, now)
	require.NoError(t, err, "aliases are per account")

	// Nothing published yet: a send (version 0) finds nothing.
	_, _, err = store.GetTemplateVersion(ctx, db, a, "welcome", 0)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, v, err := store.GetTemplateVersion(ctx, db, a, tpl.ID, 1)
	require.NoError(t, err)
	assert.Equal(t, store.TemplateDraft, v.State)
	assert.Equal(t, v1.Variables, v.Variables)
	assert.Equal(t, v1.Partials, v.Partials)

	_, err = store.PublishTemplate(ctx, db, a, "welcome", 0, now)
	require.NoError(t, err)
	v2 := v1
	v2.HTML = "<p>v2</p>"
	name := "Welcome 2"
	up, err := store.UpdateTemplate(ctx, db, a, "welcome", &name, v2, now)
	require.NoError(t, err)
	assert.Equal(t, 2, up.LatestVersion)
	assert.Equal(t, 1, up.PublishedVersion)
	assert.Equal(t, "Welcome 2", up.Name)

	got, v, err := store.GetTemplateVersion(ctx, db, a, "welcome", 0)
	require.NoError(t, err)
	assert.Equal(t, 1, v.Version, "the published version until v2 is published")
	assert.Equal(t, "<p>v1</p>", v.HTML)
	assert.Equal(t, tpl.ID, got.ID)

	_, err = store.PublishTemplate(ctx, db, a, tpl.ID, 2, now)
	require.NoError(t, err)
	_, v, err = store.GetTemplateVersion(ctx, db, a, "welcome", 0)
	require.NoError(t, err)
	assert.Equal(t, 2, v.Version)
	_, err = store.PublishTemplate(ctx, db, a, tpl.ID, 9, now)
	require.ErrorIs(t, err, store.ErrNotFound)

	vs, err := store.ListTemplateVersions(ctx, db, a, "welcome")
	require.NoError(t, err)
	require.Len(t, vs, 2)
	assert.Equal(t, []int{2, 1}, []int{vs[0].Version, vs[1].Version})
	assert.Equal(t, []string{"published", "published"}, []string{vs[0].State, vs[1].State})

	// Isolation: the other account sees its own template only.
	_, err = store.GetTemplate(ctx, db, other, tpl.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
	_, err = store.UpdateTemplate(ctx, db, other, tpl.ID, nil, v2, now)
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, store.DeleteTemplate(ctx, db, other, tpl.ID), store.ErrNotFound)

	list, err := store.ListTemplates(ctx, db, a, "", 10)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.NoError(t, store.DeleteTemplate(ctx, db, a, "welcome"))
	_, err = store.ListTemplateVersions(ctx, db, a, tpl.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}
