-- newsbot schema, version 10: kinds of source beside RSS/Atom, and WebSub subscriptions.

-- What a feed URL serves: 'auto' (found out from each answer), or forced by the feeds file:
-- 'rss' (RSS, Atom, RDF, JSON Feed), 'sitemap' (a news sitemap or sitemap index), 'html' (a
-- listing page). `selector`: a listing page's CSS selector for its stories (NULL: found by
-- markup). `found_kind`: what the last answer turned out to be, for /feeds and the poll.
ALTER TABLE feeds ADD COLUMN kind TEXT NOT NULL DEFAULT 'auto';
ALTER TABLE feeds ADD COLUMN selector TEXT;
ALTER TABLE feeds ADD COLUMN found_kind TEXT;

-- One WebSub subscription per feed (W3C WebSub, storage/websub.py): the hub and topic the
-- feed declared, the callback's unguessable token, the secret the hub signs deliveries
-- with, and where the subscription stands. Kept for good, one row per feed at most (a
-- feed's row is replaced when it subscribes anew); never shown, never logged.
CREATE TABLE websub (
    feed_id       INTEGER PRIMARY KEY REFERENCES feeds(id) ON DELETE CASCADE,
    hub           TEXT    NOT NULL,
    topic         TEXT    NOT NULL,
    token         TEXT    NOT NULL UNIQUE,
    secret        TEXT    NOT NULL,
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'active', 'failed', 'lapsed', 'denied')),
    requested_at  REAL    NOT NULL,   -- when the last subscription request went to the hub
    lease_seconds INTEGER,            -- as the hub's verification granted it
    expires_at    REAL,               -- wall time the lease ends (active)
    verified_at   REAL,
    last_push_at  REAL,               -- the last signed delivery
    failures      INTEGER NOT NULL DEFAULT 0,  -- requests in a row the hub refused or never verified
    last_error    TEXT
);
