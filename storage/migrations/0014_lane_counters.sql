-- newsbot schema, version 14: messages sent per delivery lane, per hour.
-- From now on every send adds to 'lane_<lane>_sent' in the hourly counters (storage.counters),
-- as it adds to '<kind>_sent'; /stats charts them. The counters of the hours the outbox still
-- holds sent rows for are filled in from those rows (an edit sent several times counts once).
INSERT INTO counters (hour, name, n)
    SELECT CAST(sent_at / 3600 AS INTEGER),
           'lane_' || CASE lane WHEN 0 THEN 'broadcasts' WHEN 1 THEN 'personal'
                                WHEN 2 THEN 'sections' ELSE 'corrections' END || '_sent',
           count(*)
    FROM outbox WHERE state = 'sent' AND sent_at IS NOT NULL GROUP BY 1, 2;
