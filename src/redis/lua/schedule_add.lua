-- Adds delayed events to a scheduled set, each due at a time or after a delay by Redis's
-- clock (TIME, not the publisher's). With a dedup key (an event with an id), nothing is
-- added when the key exists; otherwise it is set to `scheduled:<due ms>` until the due time
-- plus the dedup window, so the id stays taken while the event waits and after it moved.
--
-- KEYS[1]  the scheduled set
-- KEYS[2]  optional: the dedup key of the (single) event's id
-- ARGV[1]  the dedup window, ms (read only with KEYS[2])
-- ARGV[2…] per event, three values: `at` or `after`, unix ms or a delay in ms, the member
-- Reply: {1, the due times in unix ms, space separated, in order} when added;
--        {0, the dedup key's value} when the id was published or scheduled before.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if KEYS[2] then
  local seen = redis.call('GET', KEYS[2])
  if seen then return {0, seen} end
end
local dues = {}
for i = 2, #ARGV, 3 do
  local due = tonumber(ARGV[i + 1])
  if ARGV[i] == 'after' then due = now + due end
  redis.call('ZADD', KEYS[1], due, ARGV[i + 2])
  dues[#dues + 1] = string.format('%d', due)
end
if KEYS[2] and dues[1] then
  local ttl = math.max(tonumber(dues[1]) - now, 0) + tonumber(ARGV[1])
  redis.call('SET', KEYS[2], 'scheduled:' .. dues[1], 'PX', string.format('%d', ttl))
end
return {1, table.concat(dues, ' ')}
