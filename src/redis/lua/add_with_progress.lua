-- Appends a batch of entries, then records the progress of the job that wrote them. A failing
-- XADD raises before the HSET, so a resumed job never skips entries.
--
-- KEYS[1]  the stream
-- KEYS[2]  the job's progress hash
-- ARGV[1]  the number n of entries
-- ARGV     then per entry: the number c of field names plus values, then those c values;
--          then the progress hash's fields and values, alternating
-- Reply: n.
local i, n = 2, tonumber(ARGV[1])
for e = 1, n do
  local c = tonumber(ARGV[i])
  redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + c))
  i = i + c + 1
end
redis.call('HSET', KEYS[2], unpack(ARGV, i))
return n
