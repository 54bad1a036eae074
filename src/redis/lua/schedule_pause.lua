-- Pauses or resumes a recurring schedule. A resume also moves `since` to now (Redis's
-- clock), so the ticks that passed while it was paused are skipped, not caught up.
--
-- KEYS[1]  the schedule hash, <stream>:schedule:<name>
-- ARGV[1]  '1' pauses, '0' resumes
-- Reply: 1 when the state changed, 0 when it already was so.
local paused = redis.call('HGET', KEYS[1], 'paused') == '1'
if ARGV[1] == '1' then
  if paused then return 0 end
  redis.call('HSET', KEYS[1], 'paused', '1')
  return 1
end
if not paused then return 0 end
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
redis.call('HSET', KEYS[1], 'paused', '0', 'since', now)
return 1
