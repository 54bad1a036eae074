-- Appends many entries to one stream, in order.
--
-- KEYS[1]  the stream
-- ARGV     per entry: the number c of field names plus values, then those c values
--          (name, value, name, value, …)
-- Reply: the new entries' IDs, in order, as one string separated by spaces (one reply to
-- build and to parse instead of one per entry).
local ids, i = {}, 1
while i <= #ARGV do
  local c = tonumber(ARGV[i])
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + c))
  i = i + c + 1
end
return table.concat(ids, ' ')
