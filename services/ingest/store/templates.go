package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/namirasoft/email-sender/pkg/mailtemplate"
	"github.com/namirasoft/email-sender/pkg/pgerr"
)

// ErrAliasTaken means another template of the account has the alias.
var ErrAliasTaken = errors.New("another template of this account has that alias")

// Template states.
const (
	TemplateDraft     = "draft"
	TemplatePublished = "published"
)

// Template is a stored template's metadata.
type Template struct {
	ID    string
	Alias string
	Name  string
	// LatestVersion is the newest version; PublishedVersion the one sends
	// use (0: none published yet).
	LatestVersion    int
	PublishedVersion int
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// TemplateContent is what a version holds.
type TemplateContent struct {
	Subject   string
	HTML      string
	Text      string
	Variables []mailtemplate.Variable
	Partials  map[string]string
	// LayoutID is the layout template's id ("" for none).
	LayoutID string
}

// TemplateVersion is one version of a template.
type TemplateVersion struct {
	Version   int
	State     string
	CreatedAt time.Time
	TemplateContent
}

// templateRef is the WHERE condition for ref, an id or an alias, as $2.
func templateRef(ref string) string {
	if _, err := uuid.Parse(ref); err == nil {
		return "id = $2::uuid"
	}
	return "alias = $2"
}

// CreateTemplate stores a template with its first version, a draft.
func CreateTemplate(ctx context.Context, db Beginner, accountID, alias, name string, c TemplateContent, now time.Time) (Template, error) {
	t := Template{ID: uuid.Must(uuid.NewV7()).String(), Alias: alias, Name: name, LatestVersion: 1, CreatedAt: now, UpdatedAt: now}
	err := withTx(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO templates (account_id, id, alias, name, latest_version, created_at, updated_at)
			VALUES ($1, $2, $3, $4, 1, $5, $5)`, accountID, t.ID, alias, name, now); err != nil {
			if pgerr.Is(err, pgerr.UniqueViolation) {
				return ErrAliasTaken
			}
			return fmt.Errorf("insert template: %w", err)
		}
		return insertVersion(ctx, tx, accountID, t.ID, 1, c, now)
	})
	if err != nil {
		return Template{}, err
	}
	return t, nil
}

func insertVersion(ctx context.Context, db DBTX, accountID, id string, version int, c TemplateContent, now time.Time) error {
	vars, err := json.Marshal(c.Variables)
	if err != nil {
		return fmt.Errorf("variables: %w", err)
	}
	if c.Variables == nil {
		vars = []byte("[]")
	}
	partials, err := json.Marshal(c.Partials)
	if err != nil {
		return fmt.Errorf("partials: %w", err)
	}
	if c.Partials == nil {
		partials = []byte("{}")
	}
	var layout any
	if c.LayoutID != "" {
		layout = c.LayoutID
	}
	if _, err := db.Exec(ctx, `INSERT INTO template_versions
		(account_id, template_id, version, state, subject, html, text, variables, partials, layout_id, created_at)
		VALUES ($1, $2, $3, 'draft', $4, $5, $6, $7, $8, $9, $10)`,
		accountID, id, version, c.Subject, c.HTML, c.Text, vars, partials, layout, now); err != nil {
		return fmt.Errorf("insert template version: %w", err)
	}
	return nil
}

const templateCols = `id::text, alias, name, latest_version, COALESCE(published_version, 0), created_at, updated_at`

func scanTemplate(row pgx.Row) (Template, error) {
	var t Template
	err := row.Scan(&t.ID, &t.Alias, &t.Name, &t.LatestVersion, &t.PublishedVersion, &t.CreatedAt, &t.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, ErrNotFound
	}
	return t, err
}

// GetTemplate is the template ref (id or alias) of the account.
func GetTemplate(ctx context.Context, db DBTX, accountID, ref string) (Template, error) {
	t, err := scanTemplate(db.QueryRow(ctx, `SELECT `+templateCols+` FROM templates WHERE account_id = $1 AND `+templateRef(ref), accountID, ref))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return t, fmt.Errorf("get template: %w", err)
	}
	return t, err
}

// GetTemplateVersion is the template ref with a version of it: version, or
// the published one when version is 0. ErrNotFound when there is no such
// template or version (or version is 0 and none is published).
func GetTemplateVersion(ctx context.Context, db DBTX, accountID, ref string, version int) (Template, TemplateVersion, error) {
	var (
		t              Template
		v              TemplateVersion
		vars, partials []byte
		layout         *string
	)
	err := db.QueryRow(ctx, `SELECT t.id::text, t.alias, t.name, t.latest_version, COALESCE(t.published_version, 0), t.created_at, t.updated_at,
			v.version, v.state, v.subject, v.html, v.text, v.variables, v.partials, v.layout_id::text, v.created_at
		FROM templates t JOIN template_versions v
		  ON v.account_id = t.account_id AND v.template_id = t.id AND v.version = COALESCE(NULLIF($3, 0), t.published_version)
		WHERE t.account_id = $1 AND t.`+templateRef(ref), accountID, ref, version).
		Scan(&t.ID, &t.Alias, &t.Name, &t.LatestVersion, &t.PublishedVersion, &t.CreatedAt, &t.UpdatedAt,
			&v.Version, &v.State, &v.Subject, &v.HTML, &v.Text, &vars, &partials, &layout, &v.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return t, v, ErrNotFound
	}
	if err != nil {
		return t, v, fmt.Errorf("get template version: %w", err)
	}
	if err := json.Unmarshal(vars, &v.Variables); err != nil {
		return t, v, fmt.Errorf("template variables: %w", err)
	}
	if err := json.Unmarshal(partials, &v.Partials); err != nil {
		return t, v, fmt.Errorf("template partials: %w", err)
	}
	if layout != nil {
		v.LayoutID = *layout
	}
	return t, v, nil
}

// ListTemplates is a page of the account's templates by alias, after the
// alias after ("" for the first page).
func ListTemplates(ctx context.Context, db DBTX, accountID, after string, limit int) ([]Template, error) {
	rows, err := db.Query(ctx, `SELECT `+templateCols+` FROM templates WHERE account_id = $1 AND alias > $2 ORDER BY alias LIMIT $3`, accountID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	defer rows.Close()
	var out []Template
	for rows.Next() {
		t, err := scanTemplate(rows)
		if err != nil {
			return nil, fmt.Errorf("list templates: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// UpdateTemplate adds a draft version with c (and renames the template when
// name is not nil); it returns the template with its new latest version.
func UpdateTemplate(ctx context.Context, db Beginner, accountID, ref string, name *string, c TemplateContent, now time.Time) (Template, error) {
	var t Template
	err := withTx(ctx, db, func(tx pgx.Tx) error {
		var err error
		t, err = scanTemplate(tx.QueryRow(ctx, `UPDATE templates SET latest_version = latest_version + 1, updated_at = $3, name = COALESCE($4, name)
			WHERE account_id = $1 AND `+templateRef(ref)+` RETURNING `+templateCols, accountID, ref, now, name))
		if err != nil {
			return err
		}
		return insertVersion(ctx, tx, accountID, t.ID, t.LatestVersion, c, now)
	})
	return t, err
}

// PublishTemplate makes version (the latest when 0) the published one.
func PublishTemplate(ctx context.Context, db Beginner, accountID, ref string, version int, now time.Time) (Template, error) {
	var t Template
	err := withTx(ctx, db, func(tx pgx.Tx) error {
		var err error
		t, err = scanTemplate(tx.QueryRow(ctx, `SELECT `+templateCols+` FROM templates WHERE account_id = $1 AND `+templateRef(ref)+` FOR UPDATE`, accountID, ref))
		if err != nil {
			return err
		}
		if version == 0 {
			version = t.LatestVersion
		}
		tag, err := tx.Exec(ctx, `UPDATE template_versions SET state = 'published' WHERE account_id = $1 AND template_id = $2 AND version = $3`, accountID, t.ID, version)
		if err != nil {
			return fmt.Errorf("publish version: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		if _, err := tx.Exec(ctx, `UPDATE templates SET published_version = $3, updated_at = $4 WHERE account_id = $1 AND id = $2`, accountID, t.ID, version, now); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		t.PublishedVersion, t.UpdatedAt = version, now
		return nil
	})
	return t, err
}

// ListTemplateVersions is the versions of the template ref, newest first.
func ListTemplateVersions(ctx context.Context, db DBTX, accountID, ref string) ([]TemplateVersion, error) {
	t, err := GetTemplate(ctx, db, accountID, ref)
	if err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `SELECT version, state, subject, html, text, variables, partials, layout_id::text, created_at
		FROM template_versions WHERE account_id = $1 AND template_id = $2 ORDER BY version DESC`, accountID, t.ID)
	if err != nil {
		return nil, fmt.Errorf("list versions: %w", err)
	}
	defer rows.Close()
	var out []TemplateVersion
	for rows.Next() {
		var (
			v              TemplateVersion
			vars, partials []byte
			layout         *string
		)
		if err := rows.Scan(&v.Version, &v.State, &v.Subject, &v.HTML, &v.Text, &vars, &partials, &layout, &v.CreatedAt); err != nil {
			return nil, fmt.Errorf("list versions: %w", err)
		}
		if err := json.Unmarshal(vars, &v.Variables); err != nil {
			return nil, fmt.Errorf("template variables: %w", err)
		}
		if err := json.Unmarshal(partials, &v.Partials); err != nil {
			return nil, fmt.Errorf("template partials: %w", err)
		}
		if layout != nil {
			v.LayoutID = *layout
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// DeleteTemplate removes the template ref with its versions.
func DeleteTemplate(ctx context.Context, db DBTX, accountID, ref string) error {
	tag, err := db.Exec(ctx, `DELETE FROM templates WHERE account_id = $1 AND `+templateRef(ref), accountID, ref)
	if err != nil {
		return fmt.Errorf("delete template: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
