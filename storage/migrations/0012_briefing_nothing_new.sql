-- newsbot schema, version 12: whether a reader wants a briefing that has nothing new.
-- A briefing with no story for the reader is not sent unless they asked for one in
-- /settings ("Nothing new: tell me"). Kept with the chat (deleted with it by /stop).
ALTER TABLE chats ADD COLUMN nothing_new INTEGER NOT NULL DEFAULT 0;
