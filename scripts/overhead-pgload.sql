INSERT INTO pgload (id, time, client_ip, entries, rule)
SELECT md5(random()::text) || lpad(i::text, 8, '0'), now(), '198.18.' || (i % 256) || '.' || (i / 256 % 256),
       ('[{"key":"remote_address","value":"198.18.' || (i % 256) || '.1"}]')::jsonb, 'api.remote_address'
FROM generate_series(1, 1000) AS i;
