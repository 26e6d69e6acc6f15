-- newsbot schema, version 6: when a failing feed's current run of errors began, for /feeds
-- ("failing since …"). Set by the first failure after a success, cleared by the next success.
-- Feeds failing when this version is applied take their last error's time.
ALTER TABLE feeds ADD COLUMN failing_since REAL;
UPDATE feeds SET failing_since = last_error_at WHERE error_count > 0;
