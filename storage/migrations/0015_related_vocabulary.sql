-- newsbot schema, version 15: how many stories of the ranking index hold each word.
-- /related leaves out the words common across the archive ("Sweden" in a Swedish newsroom):
-- those held by more than a twentieth of the stories of articles_recent_fts (storage/related.py).
-- The vocabulary table reads the index itself: nothing is stored, nothing to keep up to date.
CREATE VIRTUAL TABLE IF NOT EXISTS articles_recent_vocab USING fts5vocab(articles_recent_fts, 'row');
