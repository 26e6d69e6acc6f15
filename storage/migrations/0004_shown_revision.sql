-- newsbot schema, version 4: the version of its story a sent alert showed. A correction read
-- while the alert was on its way is newer than what the reader got, though older than the
-- send; comparing revisions (not times) marks that message's edit "updated" too. Rows sent
-- before this version showed revision 0 (corrections came with version 3, unreleased).
ALTER TABLE outbox ADD COLUMN shown_revision INTEGER NOT NULL DEFAULT 0;
