-- newsbot schema, version 7: what each chat was told, and corrections with manners.

-- Which message each chat got for each story, kept apart from the outbox (whose rows are
-- message bodies, pruned after NEWSBOT_OUTBOX_DAYS): a story matched again (a correction, a
-- new section) never reaches a chat a second time as new, however old the outbox rows are.
-- Kept while the story can still be corrected or is still listed in its feed
-- (storage/told.py). About 30 bytes a sent alert: four integers, keyed by story then chat.
CREATE TABLE told (
    story      INTEGER NOT NULL,   -- articles.rowid
    chat_id    INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    sent_at    INTEGER NOT NULL,   -- UTC epoch seconds
    PRIMARY KEY (story, chat_id)
) WITHOUT ROWID;
INSERT OR IGNORE INTO told (story, chat_id, message_id, sent_at)
    SELECT a.rowid, o.chat_id, o.message_id, CAST(o.sent_at AS INTEGER)
    FROM outbox o JOIN articles a ON a.id = o.article_id
    WHERE o.state = 'sent' AND o.kind IN ('alert', 'post') AND o.message_id IS NOT NULL;

-- The text a sent alert's message shows now, as a hash (of the text and its buttons): an
-- edit that would leave it as it is is not sent.
ALTER TABLE outbox ADD COLUMN shown_hash INTEGER;
-- A correction that came while the message's edit was on its way: edit again after it.
ALTER TABLE outbox ADD COLUMN again INTEGER NOT NULL DEFAULT 0;

-- Corrections get a lane of their own (3), behind new alerts; one edit row per message
-- ('e:<message id>'), re-armed by each correction, so edits of one message merge.
UPDATE outbox SET state = 'cancelled', done_at = created_at, last_error = 'merged into a newer edit'
    WHERE kind = 'edit' AND state IN ('pending', 'held') AND id NOT IN (
        SELECT max(id) FROM outbox WHERE kind = 'edit' AND state IN ('pending', 'held')
        GROUP BY chat_id, target_id);
UPDATE outbox SET key = key || ':old' WHERE kind = 'edit' AND state NOT IN ('pending', 'held');
UPDATE outbox SET key = 'e:' || target_id, lane = 3 WHERE kind = 'edit' AND state IN ('pending', 'held');
