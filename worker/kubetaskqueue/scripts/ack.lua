-- ack: attempts that succeeded; delete their tasks (or keep them with their result,
-- see _ack.lua). One call acks a batch; claim.lua acks the same way before it claims.
-- KEYS: 1 work, 2 stats, 3 rate, 4 events
-- ARGV: 1 task key prefix, 2 done list prefix, 3 seconds the batch's attempts ran in
--       all ('' = not known), then triples: id, token, result JSON ('' = none)
-- Returns the ids refused because their lease is no longer ours (fenced: counted,
-- nothing changed for them).
local now = now_s()
local acks = ack_read(KEYS[1], ARGV[1], ARGV[2], 4)
return ack_write(acks, KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], now, tonumber(ARGV[3]))
