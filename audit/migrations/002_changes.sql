-- Configuration changes share the trail with denials (kind = 'config_change'): who, which versions, the diff.
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS change jsonb;
CREATE INDEX IF NOT EXISTS audit_events_changes ON audit_events (id) WHERE kind = 'config_change';
