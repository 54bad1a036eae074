-- The ID of the n-th entry from the start of a stream, without sending any entry bodies.
--
-- KEYS[1]  the stream
-- ARGV[1]  n (1-based)
-- Reply: the ID, or nil when the stream has fewer than n entries.
local r = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])
if #r < tonumber(ARGV[1]) then return false end
return r[#r][1]
