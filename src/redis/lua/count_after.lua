-- Counts the entries after an ID, one page at a time, without sending any entry bodies:
-- how weir tells a group's unread entries when XINFO GROUPS reports `lag` as nil (after
-- XDEL or trimming).
--
-- KEYS[1]  the stream
-- ARGV[1]  where to start, exclusive: `(<id>`
-- ARGV[2]  the most entries to count in this call (the page)
-- Reply: { n, the last counted ID or false when n is 0 }.
local r = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
if #r == 0 then return { 0, false } end
return { #r, r[#r][1] }
