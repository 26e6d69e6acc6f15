-- newsbot schema, version 11: the reader queries at a million stories.
-- Ranking (bm25) first counts, for every word asked, the stories of its index that hold the
-- word: a walk of the word's whole list, whatever the query asks for. Over a million stories a
-- common word's list alone takes tens of milliseconds, and /related asks for eight words. The
-- same stems, for the newest stories only (storage.articles.RECENT_STORIES), bound that walk:
-- /search and /related rank there and reach the whole archive (articles_fts) only for what
-- the newest stories do not hold. Written beside articles_fts by storage/articles.py and
-- trimmed to RECENT_STORIES by retention (storage/maintenance.py).
CREATE VIRTUAL TABLE articles_recent_fts USING fts5(
    title, summary, tags,
    tokenize = "unicode61 remove_diacritics 0 tokenchars '''+#'"
);
INSERT INTO articles_recent_fts (rowid, title, summary, tags)
    SELECT rowid, title, summary, tags FROM articles_fts
    WHERE rowid > (SELECT coalesce(max(rowid), 0) FROM articles) - 50000;

-- The stories published in several sections, newest first: /latest finds a story under its
-- second and later sections here (its first has articles_section_published) without reading
-- every newer story to look at its sections.
CREATE INDEX articles_multi_section ON articles(published_at) WHERE instr(sections, '|') > 0;
