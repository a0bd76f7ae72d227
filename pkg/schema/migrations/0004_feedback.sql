-- SES feedback through SNS (report service): notifications name the message by
-- the provider's message id, looked up within the provider's account.
CREATE INDEX messages_account_provider_message_id ON messages (account_id, provider_message_id)
    WHERE provider_message_id <> '';

-- SNS subscriptions confirmed (or unsubscribed) for a provider configuration's
-- feedback endpoint, for operators to see which topics feed which provider.
CREATE TABLE feedback_subscriptions (
    account_id       uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    provider_id      uuid NOT NULL,
    topic_arn        text NOT NULL,
    subscription_arn text NOT NULL DEFAULT '',
    confirmed_at     timestamptz,
    unsubscribed_at  timestamptz,
    PRIMARY KEY (provider_id, topic_arn)
);
CREATE INDEX feedback_subscriptions_account ON feedback_subscriptions (account_id);
