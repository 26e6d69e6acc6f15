-- newsbot schema, version 3: what a newsroom needs after months of traffic and what readers
-- choose. Times are UTC epoch seconds (REAL) unless said otherwise.

DROP TABLE meta;

-- The search index holds the word stems of storage/words.py (written by storage/articles.py,
-- so one rule serves matching, the index and its queries; filled again after this script).
DROP TRIGGER articles_ai;
DROP TRIGGER articles_ad;
DROP TRIGGER articles_au;
DROP TABLE articles_fts;
CREATE VIRTUAL TABLE articles_fts USING fts5(
    title, summary, tags,
    tokenize = "unicode61 remove_diacritics 0 tokenchars '''+#'"
);

-- One story, one row: every section it was published in ('|'-joined, the first one is
-- `section`), its title in the form used to recognise a re-published story, and its
-- corrections (a changed title or link under the same id).
ALTER TABLE articles ADD COLUMN sections TEXT NOT NULL DEFAULT '';
ALTER TABLE articles ADD COLUMN title_key TEXT NOT NULL DEFAULT '';
ALTER TABLE articles ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
ALTER TABLE articles ADD COLUMN revised_at REAL;
UPDATE articles SET sections = coalesce(section, '');
CREATE INDEX articles_url ON articles(url);
CREATE INDEX articles_title_key ON articles(title_key, published_at) WHERE title_key <> '';
CREATE INDEX articles_fetched ON articles(fetched_at);

-- What a reader chose: their time zone (NULL: the newsroom's), quiet hours (minutes after
-- local midnight; NULL: none) and what happens to alerts then, briefing times ('HH:MM'
-- local, ','-joined) and when the next one is due.
ALTER TABLE chats ADD COLUMN timezone TEXT;
ALTER TABLE chats ADD COLUMN quiet_start INTEGER;
ALTER TABLE chats ADD COLUMN quiet_end INTEGER;
ALTER TABLE chats ADD COLUMN quiet_mode TEXT NOT NULL DEFAULT 'hold'
    CHECK (quiet_mode IN ('hold', 'silent'));
ALTER TABLE chats ADD COLUMN briefings TEXT NOT NULL DEFAULT '';
ALTER TABLE chats ADD COLUMN next_briefing_at REAL;
ALTER TABLE chats ADD COLUMN last_briefing_at REAL;
CREATE INDEX chats_next_briefing ON chats(next_briefing_at) WHERE next_briefing_at IS NOT NULL;
-- The audience (broadcasts) and the reader counts (/stats) read this index alone.
CREATE INDEX chats_audience ON chats(active, type, paused, inactive_reason);

-- Exclusions ("never this word") beside sections and keywords; per subscription, instant
-- alerts or the briefing only; a forum topic a group bound a section to.
CREATE TABLE subscriptions_v3 (
    id         INTEGER PRIMARY KEY,
    chat_id    INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE ON UPDATE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('section', 'keyword', 'exclude')),
    value      TEXT    NOT NULL,                   -- section slug or normalised keyword
    display    TEXT    NOT NULL,                   -- as the reader wrote it
    mode       TEXT    NOT NULL DEFAULT 'instant' CHECK (mode IN ('instant', 'briefing')),
    thread_id  INTEGER,                            -- forum topic for this section's alerts
    created_at REAL    NOT NULL,
    UNIQUE (chat_id, kind, value)
);
INSERT INTO subscriptions_v3 (id, chat_id, kind, value, display, created_at)
    SELECT id, chat_id, kind, value, display, created_at FROM subscriptions;
DROP TABLE subscriptions;
ALTER TABLE subscriptions_v3 RENAME TO subscriptions;
CREATE INDEX subscriptions_kind_value ON subscriptions(kind, value);

-- Paid (allow_paid_broadcast) and urgent (ignores quiet hours) broadcasts.
ALTER TABLE broadcasts ADD COLUMN paid INTEGER NOT NULL DEFAULT 0;
ALTER TABLE broadcasts ADD COLUMN paid_refused TEXT;
ALTER TABLE broadcasts ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0;

-- The outbox, generalised. `kind`: alert (one story for one chat), broadcast, briefing,
-- edit (a correction of a sent message) or post (a story to a section's channel). `key`
-- makes every message unique per chat (a second enqueue is a no-op): 'a:<article id>',
-- 'b:<broadcast id>', 'br:<slot>', 'e:<message id>:<article rowid>:<revision>'.
-- `lane`: 0 broadcasts, 1 personal (keywords, briefings, channel posts), 2 sections and
-- corrections (see docs/delivery.md). `held`: matched while the chat was paused.
-- `digest`: held alerts released as one message ('away' after /resume, 'overnight' after
-- quiet hours). `done_at`: when the row reached a final state (retention counts from it).
CREATE TABLE outbox_v3 (
    id              INTEGER PRIMARY KEY,
    chat_id         INTEGER NOT NULL REFERENCES chats(id) ON DELETE CASCADE ON UPDATE CASCADE,
    kind            TEXT    NOT NULL CHECK (kind IN ('alert', 'broadcast', 'briefing', 'edit', 'post')),
    key             TEXT    NOT NULL,
    lane            INTEGER NOT NULL DEFAULT 2,
    article_id      TEXT    REFERENCES articles(id) ON DELETE CASCADE,
    broadcast_id    INTEGER REFERENCES broadcasts(id) ON DELETE CASCADE,
    target_id       INTEGER,                       -- the message an edit changes
    reasons         TEXT    NOT NULL DEFAULT '',   -- '|'-joined, e.g. 'section:world|keyword:drones'
    thread_id       INTEGER,
    digest          TEXT,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('held', 'pending', 'sending', 'sent', 'failed', 'cancelled', 'blocked')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL,
    created_at      REAL    NOT NULL,
    sent_at         REAL,
    done_at         REAL,
    message_id      INTEGER,
    last_error      TEXT,
    UNIQUE (chat_id, key)
);
INSERT INTO outbox_v3 (id, chat_id, kind, key, lane, article_id, broadcast_id, reasons, state,
                       attempts, next_attempt_at, created_at, sent_at, done_at, message_id,
                       last_error)
    SELECT id, chat_id,
           CASE WHEN broadcast_id IS NOT NULL THEN 'broadcast' ELSE 'alert' END,
           CASE WHEN broadcast_id IS NOT NULL THEN 'b:' || broadcast_id ELSE 'a:' || article_id END,
           CASE WHEN broadcast_id IS NOT NULL THEN 0
                WHEN reasons LIKE '%keyword:%' THEN 1 ELSE 2 END,
           article_id, broadcast_id, reasons, state, attempts, next_attempt_at, created_at,
           sent_at,
           CASE WHEN state IN ('sent', 'failed', 'cancelled', 'blocked')
                THEN coalesce(sent_at, created_at) END,
           message_id, last_error
    FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v3 RENAME TO outbox;
CREATE INDEX outbox_due ON outbox(lane, next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_held ON outbox(chat_id, created_at) WHERE state = 'held';
-- A chat's alerts still to go, to send those due together with one that waited.
CREATE INDEX outbox_pending_chat ON outbox(chat_id, next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_done ON outbox(done_at) WHERE done_at IS NOT NULL;
CREATE INDEX outbox_broadcast ON outbox(broadcast_id, state) WHERE broadcast_id IS NOT NULL;
-- Corrections look up a story's sent messages; deleting a story (retention) cascades here.
CREATE INDEX outbox_article ON outbox(article_id, state);
CREATE INDEX outbox_message ON outbox(chat_id, message_id) WHERE message_id IS NOT NULL;

-- Figures that must not shrink when rows are pruned or readers leave: counts per UTC hour
-- (`hour` = epoch seconds // 3600), e.g. 'articles', 'alert_sent', 'alert_failed',
-- 'broadcast_blocked', 'latency_le_60' (publication → alert, one bucket each).
CREATE TABLE counters (
    hour INTEGER NOT NULL,
    name TEXT    NOT NULL,
    n    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, name)
) WITHOUT ROWID;
INSERT INTO counters (hour, name, n)
    SELECT CAST(fetched_at / 3600 AS INTEGER), 'articles', count(*) FROM articles GROUP BY 1;
INSERT INTO counters (hour, name, n)
    SELECT CAST(done_at / 3600 AS INTEGER), kind || '_' || state, count(*) FROM outbox
    WHERE state IN ('sent', 'failed', 'blocked') GROUP BY 1, 2;

-- Admin actions, kept for as long as the database lives.
CREATE TABLE audit (
    id       INTEGER PRIMARY KEY,
    at       REAL    NOT NULL,
    admin_id INTEGER NOT NULL,
    action   TEXT    NOT NULL,
    detail   TEXT    NOT NULL DEFAULT ''
);

-- Feeds: how many stories the last poll stored without alerting (the per-poll cap), and
-- when a feed's Retry-After allows the next poll (kept in next_poll_at).
ALTER TABLE feeds ADD COLUMN capped INTEGER NOT NULL DEFAULT 0;

-- A write /healthz makes to prove the database takes writes.
CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at REAL NOT NULL
);
