-- How many delayed events a scheduled set holds and when the soonest is due, with Redis's
-- clock, in one read.
--
-- KEYS[1]  the scheduled set
-- Reply: {members, the soonest due time in unix ms or -1, Redis's now in unix ms}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local at = -1
if first[2] then at = math.max(math.floor(tonumber(first[2])), 0) end
return {redis.call('ZCARD', KEYS[1]), at, now}
