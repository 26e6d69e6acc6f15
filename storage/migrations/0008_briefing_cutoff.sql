-- newsbot schema, version 8: where each reader's briefings stopped, by story.
-- A briefing carries the stories stored after the previous briefing's cut-off: the newest
-- story (rowid) that briefing looked at when it was composed. The cut-off is recorded as
-- pending when a briefing is composed and becomes the chat's cut-off when it is sent, so a
-- briefing sent late, retried or composed again after a restart never repeats a story and
-- never skips one. Kept with the chat (deleted with it by /stop).
ALTER TABLE chats ADD COLUMN briefed_up_to INTEGER;
ALTER TABLE chats ADD COLUMN briefing_looked_at INTEGER;
