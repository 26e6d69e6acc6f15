-- newsbot schema, version 9: a story is identified within its feed, and what was seen is
-- remembered after the archive lets the story go (storage/identity.py).
-- Every statement is instant whatever the archive's size: no row is rewritten, no index
-- over the articles is built.

-- When a poll of its feed last listed the story (UTC epoch seconds; NULL: not since this
-- version, its fetch time stands in). Archive retention counts from it, so a story still in
-- its feed stays in the archive however old it is.
ALTER TABLE articles ADD COLUMN listed_at INTEGER;
-- When a poll of the feed last read a document (not a 304). A story of that document is
-- listed for as long as the feed answers (last_success_at counts 304s as well): a feed that
-- does not change still lists what it listed.
ALTER TABLE feeds ADD COLUMN parsed_at REAL;

-- What was seen, after the archive let the story go: one row per identity of a deleted story
-- (its id within its feed; its canonical link under feed 0, which any feed shares), with when
-- it was last listed. A poll that lists it again finds it here and keeps it; the row goes
-- storage.identity.SEEN_DAYS after the story was last listed. About 45 bytes a row.
CREATE TABLE seen (
    feed_id   INTEGER NOT NULL,   -- 0: any feed (a link), or a story stored without one
    key       INTEGER NOT NULL,   -- 64 bits of a hash of the identity (storage.identity.key)
    listed_at INTEGER NOT NULL,
    PRIMARY KEY (feed_id, key)
) WITHOUT ROWID;
CREATE INDEX seen_listed ON seen(listed_at);
