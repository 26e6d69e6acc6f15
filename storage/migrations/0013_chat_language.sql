-- newsbot schema, version 13: the language a chat reads newsbot in ("en", "sv").
-- Set from the reader's Telegram language at first contact, or with /language; NULL (groups,
-- channels, readers whose Telegram language newsbot does not ship) means the newsroom's
-- default, NEWSBOT_LANGUAGE. Kept with the chat (deleted with it by /stop).
ALTER TABLE chats ADD COLUMN language TEXT;
