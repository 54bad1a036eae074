-- Reads a recurring schedule's state with Redis's clock (every process agrees on it, however
-- skewed the hosts are). On a schedule's very first start (neither `last_tick` nor `since`)
-- it records `since` = now, so nothing before that is ever caught up.
--
-- KEYS[1]  the schedule hash, <stream>:schedule:<name>
-- ARGV[1]  '1': record `since` on a first start; '0': only read (listings)
-- Reply: {now ms, last_tick or '', since or '', paused or ''}
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
local v = redis.call('HMGET', KEYS[1], 'last_tick', 'since', 'paused')
if ARGV[1] == '1' and not v[1] and not v[2] then
  redis.call('HSET', KEYS[1], 'since', now)
  v[2] = now
end
return {now, v[1] or '', v[2] or '', v[3] or ''}
