-- Appends a batch of entries, then records the progress of the job that wrote them. A failing
-- XADD raises before the HSET, so a resumed job never skips entries. The batch goes only if
-- the job is still this run's and at the cursor it read (a compare-and-set): a job resumed
-- twice (two engines, or the CLI and the API) never publishes a batch twice.
--
-- KEYS[1]  the stream
-- KEYS[2]  the job's progress hash
-- ARGV[1]  this run's token (the hash's `runner` field)
-- ARGV[2]  the cursor this batch starts at (the hash's `cursor` field)
-- ARGV[3]  the number n of entries
-- ARGV     then per entry: the number c of field names plus values, then those c values;
--          then the progress hash's fields and values, alternating (may be none)
-- Reply: n; -1 when the job is another run's or its cursor moved (nothing written).
local state = redis.call('HMGET', KEYS[2], 'runner', 'cursor')
if state[1] ~= ARGV[1] or state[2] ~= ARGV[2] then
  return -1
end
local i, n = 4, tonumber(ARGV[3])
for e = 1, n do
  local c = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + c))
  i = i + c + 1
end
if ARGV[i] then
  redis.call('HSET', KEYS[2], unpack(ARGV, i))
end
return n
