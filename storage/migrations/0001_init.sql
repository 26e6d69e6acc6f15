-- newsbot schema, version 1. Times are UTC epoch seconds (REAL).

CREATE TABLE feeds (
    id              INTEGER PRIMARY KEY,
    url             TEXT    NOT NULL UNIQUE,
    rule            TEXT    NOT NULL,              -- JSON SectionRule
    title           TEXT,
    etag            TEXT,
    last_modified   TEXT,
    last_success_at REAL,
    last_error      TEXT,
    last_error_at   REAL,
    error_count     INTEGER NOT NULL DEFAULT 0,
    next_poll_at    REAL    NOT NULL DEFAULT 0,
    primed          INTEGER NOT NULL DEFAULT 0,    -- 1 once a first poll marked its items as seen
    enabled         INTEGER NOT NULL DEFAULT 1,
    source          TEXT    NOT NULL DEFAULT 'file' CHECK (source IN ('file', 'command')),
    created_at      REAL    NOT NULL
);

CREATE TABLE articles (
    rowid        INTEGER PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,          -- stable id: guid, canonical link or content hash
    feed_id      INTEGER REFERENCES feeds(id) ON DELETE SET NULL,
    url          TEXT    NOT NULL,
    title        TEXT    NOT NULL,
    summary      TEXT    NOT NULL DEFAULT '',
    section      TEXT,
    tags         TEXT    NOT NULL DEFAULT '',      -- tags joined by '|'
    published_at REAL    NOT NULL,
    fetched_at   REAL    NOT NULL,
    image_url    TEXT,
    matched      INTEGER NOT NULL DEFAULT 0        -- 0 = alerts still to be enqueued
);
CREATE INDEX articles_published ON articles(published_at DESC);
CREATE INDEX articles_section_published ON articles(section, published_at DESC);
CREATE INDEX articles_unmatched ON articles(matched) WHERE matched = 0;

CREATE VIRTUAL TABLE articles_fts USING fts5(
    title, summary, tags,
    content = 'articles', content_rowid = 'rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER articles_ai AFTER INSERT ON articles BEGIN
    INSERT INTO articles_fts(rowid, title, summary, tags)
    VALUES (new.rowid, new.title, new.summary, replace(new.tags, '|', ' '));
END;
CREATE TRIGGER articles_ad AFTER DELETE ON articles BEGIN
    INSERT INTO articles_fts(articles_fts, rowid, title, summary, tags)
    VALUES ('delete', old.rowid, old.title, old.summary, replace(old.tags, '|', ' '));
END;
CREATE TRIGGER articles_au AFTER UPDATE OF title, summary, tags ON articles BEGIN
    INSERT INTO articles_fts(articles_fts, rowid, title, summary, tags)
    VALUES ('delete', old.rowid, old.title, old.summary, replace(old.tags, '|', ' '));
    INSERT INTO articles_fts(rowid, title, summary, tags)
    VALUES (new.rowid, new.title, new.summary, replace(new.tags, '|', ' '));
END;

CREATE TABLE chats (
    id              INTEGER PRIMARY KEY,           -- Telegram chat id
    type            TEXT    NOT NULL DEFAULT 'private',
    title           TEXT,
    active          INTEGER NOT NULL DEFAULT 1,    -- 0 = blocked us, kicked us, or gone
    inactive_reason TEXT,
    paused          INTEGER NOT NULL DEFAULT 0,
    link_previews   INTEGER NOT NULL DEFAULT 0,
    combine         INTEGER NOT NULL DEFAULT 1,
    created_at      REAL    NOT NULL,
    updated_at      REAL    NOT NULL
);

CREATE TABLE subscriptions (
    id         INTEGER PRIMARY KEY,
    chat_id    INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE ON UPDATE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('section', 'keyword')),
    value      TEXT    NOT NULL,                   -- section slug or normalised keyword
    display    TEXT    NOT NULL,                   -- as the reader wrote it
    created_at REAL    NOT NULL,
    UNIQUE (chat_id, kind, value)
);
CREATE INDEX subscriptions_kind_value ON subscriptions(kind, value);

CREATE TABLE broadcasts (
    id                  INTEGER PRIMARY KEY,
    admin_id            INTEGER NOT NULL,
    admin_chat_id       INTEGER NOT NULL,
    html                TEXT    NOT NULL,          -- message exactly as readers see it
    audience            TEXT,                      -- section slug, or NULL for everyone
    state               TEXT    NOT NULL DEFAULT 'preview'
                        CHECK (state IN ('preview', 'sending', 'stopped', 'done', 'cancelled', 'expired')),
    preview_message_id  INTEGER,
    progress_message_id INTEGER,
    total               INTEGER NOT NULL DEFAULT 0,
    created_at          REAL    NOT NULL,
    started_at          REAL,
    finished_at         REAL
);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    chat_id         INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE ON UPDATE CASCADE,
    article_id      TEXT    REFERENCES articles(id) ON DELETE CASCADE,
    broadcast_id    INTEGER REFERENCES broadcasts(id) ON DELETE CASCADE,
    priority        INTEGER NOT NULL DEFAULT 0,    -- higher goes first (broadcast 10, alert 0)
    reasons         TEXT    NOT NULL DEFAULT '',   -- '|'-joined, e.g. 'section:world|keyword:drones'
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'cancelled', 'blocked')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL,
    created_at      REAL    NOT NULL,
    sent_at         REAL,
    message_id      INTEGER,
    last_error      TEXT,
    CHECK ((article_id IS NULL) <> (broadcast_id IS NULL)),
    UNIQUE (chat_id, article_id),
    UNIQUE (chat_id, broadcast_id)
);
CREATE INDEX outbox_due ON outbox(priority DESC, next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_state_sent ON outbox(state, sent_at);
CREATE INDEX outbox_broadcast ON outbox(broadcast_id, state) WHERE broadcast_id IS NOT NULL;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
