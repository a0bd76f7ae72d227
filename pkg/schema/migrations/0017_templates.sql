-- Email templates (issue 16; pkg/mailtemplate renders them): per account,
-- addressed by id or by an alias unique in the account, with numbered
-- versions. Every change is a new version, a draft until published; sends
-- use the published version unless they name one. A template may name a
-- layout (another template of the account whose published HTML and text
-- wrap its content in a {{{content}}} slot); partials are kept with each
-- version.
CREATE TABLE templates (
    account_id        uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    id                uuid NOT NULL,
    alias             text NOT NULL,
    name              text NOT NULL DEFAULT '',
    -- The newest version, and the published one (NULL before the first
    -- publication).
    latest_version    integer NOT NULL,
    published_version integer,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (account_id, id),
    UNIQUE (account_id, alias)
);

CREATE TABLE template_versions (
    account_id  uuid NOT NULL,
    template_id uuid NOT NULL,
    version     integer NOT NULL,
    -- 'draft' until published; a published version stays 'published' when
    -- a newer one is (templates.published_version says which one is used).
    state       text NOT NULL CHECK (state IN ('draft', 'published')),
    subject     text NOT NULL,
    html        text NOT NULL,
    text        text NOT NULL,
    -- [{"name","type","required","default","description"}] (pkg/mailtemplate.Variable)
    variables   jsonb NOT NULL DEFAULT '[]',
    -- {"name": "source"}
    partials    jsonb NOT NULL DEFAULT '{}',
    -- The layout template (its published version at render time); NULL for none.
    layout_id   uuid,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (account_id, template_id, version),
    FOREIGN KEY (account_id, template_id) REFERENCES templates (account_id, id) ON DELETE CASCADE
);
