-- newsbot schema, version 5: the rows caught mid-send, found without reading the outbox.
-- At every start the dispatcher puts them back to pending (storage.outbox.reset_in_flight);
-- with no index on the state that read every row kept, 3-4 s at 17 million rows, before
-- the first message could go.
CREATE INDEX outbox_sending ON outbox(id) WHERE state = 'sending';
